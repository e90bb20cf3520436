"""Figure panels: the config grammar, the block each panel reads, parse-time checks, captions."""

import copy

import pytest

from vaetransfer import panels, plan
from vaetransfer.captions import SECTIONS, TEXT, caption, label, section
from vaetransfer.panels import FIGURE_KINDS, Model, figure_panels

from .conftest import REPO, load_config


@pytest.fixture(scope="module")
def quick():
    return load_config(REPO / "config/quick.yaml")


@pytest.fixture(scope="module")
def paper():
    return load_config(REPO / "config/config.yaml")


def test_single_panel_and_panel_list_forms_agree():
    single = figure_panels("fig4", {"dataset": "dsprites", "metric": "procrustes",
                                    "x": {"objective": "beta_vae", "hparam": 1},
                                    "y": {"objective": "dip_vae_ii", "hparam": 1}})
    listed = figure_panels("fig4", {"metric": "procrustes", "panels": [
        {"dataset": "dsprites", "x": {"objective": "beta_vae", "hparam": 1},
         "y": {"objective": "dip_vae_ii", "hparam": 1}}]})
    assert single == listed
    (panel,) = single
    assert panel.kind == "models" and panel.family == "model_pairs" and panel.metric == "procrustes"
    assert panel.x == Model("conv", "beta_vae", 1.0) and panel.y == Model("conv", "dip_vae_ii", 1.0)
    assert panel.table == "results/tables/similarity/model_pairs/dsprites/conv-beta_vae-1_vs_conv-dip_vae_ii-1.parquet"


def test_each_figure_kind_reads_the_family_that_answers_it():
    expected = {"fig2": "learning_dynamics", "fig3": "model_pairs", "fig4": "model_pairs",
                "fig5a": "cross_domain", "fig5b": "retrained_latents", "appF": "model_pairs",
                "appG": "learning_dynamics", "appH": "encoder_vs_classifier", "appI": "learning_dynamics"}
    assert {name: panels.KIND_FAMILY[kind] for name, kind in FIGURE_KINDS.items()} == expected


@pytest.mark.parametrize("config_name", ["quick", "paper"])
def test_every_panel_block_is_a_scored_block(config_name, request):
    """A panel's table is exactly one block the plan scores, holding the comparisons it shows."""
    config = request.getfixturevalue(config_name)
    for name, found in panels.heatmap_figures(config).items():
        for panel in found:
            blocks = plan.blocks(config, panel.family)
            assert panel.block in blocks, (name, panel.block)
            if panel.kind == "models":
                for a, b in blocks[panel.block]:
                    assert (a.run.objective, a.run.hparam, b.run.objective, b.run.hparam) == (
                        panel.x.objective, panel.x.hparam, panel.y.objective, panel.y.hparam)


def test_model_pairs_family_is_what_the_figures_ask_for(quick):
    pairs = plan.comparisons(quick, "model_pairs")
    seeds = quick["training"]["seeds"]
    # fig3 (beta 200 vs 1) and fig4 = appF (beta_vae vs dip_vae_ii): two model pairs, all seed pairs.
    assert len(pairs) == 2 * len(seeds) ** 2
    assert {(a.run.objective, a.run.hparam, b.run.objective, b.run.hparam) for a, b in pairs} == {
        ("beta_vae", 200.0, "beta_vae", 1.0), ("beta_vae", 1.0, "dip_vae_ii", 1.0)}
    final = plan.train_steps(quick, "dsprites")
    assert all(a.step == b.step == final and a.eval_dataset == b.eval_dataset == "dsprites" for a, b in pairs)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["figures"].update(fig4={"dataset": "dsprites", "x": {"objective": "beta_vae", "hparam": 3},
                                         "y": {"objective": "beta_vae", "hparam": 1}}),
     r"figures.fig4: conv/beta_vae/3 \(x\) is not trained on 'dsprites'"),
    (lambda c: c["figures"].update(fig5a={"source": "symsol", "target": "dsprites"}),
     r"figures.fig5a: symsol -> dsprites is not in similarity.transfer_pairs"),
    (lambda c: c["similarity"]["families"].remove("model_pairs"),
     r"figures.fig3: a models panel needs family 'model_pairs'"),
    (lambda c: c["figures"]["fig2"].update(x={"objective": "beta_vae", "hparam": 1}),
     r"figures.fig2: key\(s\) \['x'\] do not apply to a dynamics panel"),
    (lambda c: c["figures"]["fig2"].update(step_x=7),
     r"figures.fig2.step_x: 7 is not a checkpoint of 'dsprites'"),
    (lambda c: c["figures"].update(fig6={"source": "symsol", "target": "dsprites"}),
     r"figures.fig6: symsol -> dsprites is not in transfer.pairs"),
    (lambda c: c["figures"].update(fig7={"source": "dsprites", "target": "symsol", "seed": 1}),
     r"figures.fig7: key\(s\) \['seed'\] do not apply"),
    (lambda c: c["figures"].update(appH={"dataset": "symsol"}),
     r"figures.appH: classifier/cross_entropy/1 \(y\) is not trained on 'symsol'"),
    (lambda c: c["figures"].update(appJ={"term": "kl_divergence"}),
     r"figures.appJ.term: no drawn run logs 'kl_divergence'"),
    (lambda c: c["figures"].update(appJ={"datasets": ["symsol"], "term": "dip_regulariser"}),
     r"figures.appJ.term: no drawn run logs 'dip_regulariser'"),  # DIP-VAE-II runs only on dSprites
])
def test_bad_figure_specs_fail_at_parse_time_naming_the_key(quick, edit, message):
    config = copy.deepcopy(quick)
    edit(config)
    with pytest.raises(plan.ConfigError, match=message):
        plan.validate_plan(config)


@pytest.mark.parametrize("term", ["kl", "reconstruction", "kl_3", "dip_regulariser", "ce_shape", "accuracy_scale"])
def test_appJ_draws_any_logged_term(quick, term):
    config = copy.deepcopy(quick)
    config["figures"]["appJ"] = {"datasets": ["dsprites"], "term": term}
    plan.validate_plan(config)


def test_every_figure_has_a_caption_and_a_report_section(quick):
    names = [*FIGURE_KINDS, "fig1", "fig6a", "fig6b", "appB_a", "appB_b", "fig7", "fig8", "appJ",
             "table1", "appA"]
    for name in names:
        assert section(name) in SECTIONS.values()
        assert caption(name).startswith("**")
    assert set(TEXT) == set(names) - {"fig5"}
    # the report's subcategory: the paper's own name of each figure or table, each its own entry
    assert [label(n) for n in ("fig3", "fig6a", "appB_b", "table1", "appJ")] == [
        "Figure 3", "Figure 6a", "Appendix B (b)", "Table 1", "Appendix J"]
    assert len({label(n) for n in TEXT}) == len(TEXT)
    text = caption("fig4", quick["figures"]["fig4"])
    assert "Panels: beta_vae, 1 vs dip_vae_ii, 1 on dsprites." in text
