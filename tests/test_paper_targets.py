"""Every figure and table of the paper as a named target, on the embedded default (config/quick.yaml):
what each target schedules, the full run as the README's first command makes it, the findings,
re-running one figure, and the HTML report opened in a real headless browser."""

import re
import shutil

import pandas as pd
import pytest

from vaetransfer.captions import SECTIONS
from vaetransfer.findings import CLAIMS

from .conftest import REPO, run_snakemake

LOCAL = ["--profile", str(REPO / "profiles/local")]
HEATMAP_RULES = {"prepare_dataset", "evaluation_sample", "train_vae", "dump_activations", "score_shard",
                 "aggregate_block", "plot_heatmap"}
TRANSFER_RULES = {"prepare_dataset", "train_vae", "train_transfer", "unfreezing", "pair_figure"}
DOWNSTREAM_RULES = {"prepare_dataset", "train_vae", "downstream_features", "downstream_label", "downstream_tables"}
#: What each named target may schedule from nothing: the rules its figure needs and no other.
EXPECTED_RULES = {
    "fig1": {"figure1_synthetic"},
    **{name: HEATMAP_RULES for name in ("fig2", "fig3", "fig4", "fig5a", "appF", "appG", "appH", "appI")},
    "fig5": HEATMAP_RULES | {"train_transfer", "dump_transfer_activations"},
    "fig5b": HEATMAP_RULES | {"train_transfer", "dump_transfer_activations"},
    "fig6": TRANSFER_RULES,
    "appB": TRANSFER_RULES,
    "fig7": {"prepare_dataset", "train_vae", "reconstructions", "pair_figure"},
    "fig8": {"prepare_dataset", "train_vae", "reconstructions", "pair_figure"},
    "appJ": {"prepare_dataset", "train_vae", "aggregate_losses", "plot_losses"},
    "table1": DOWNSTREAM_RULES,
    "appA": DOWNSTREAM_RULES,
}
NAMED = [*EXPECTED_RULES, "figures", "findings"]


def scheduled(proc) -> dict[str, int]:
    """{rule: job count} from a dry run's job stats table."""
    stats = (proc.stdout + proc.stderr).split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    work = tmp_path_factory.mktemp("fresh")
    shutil.copytree(REPO / "config", work / "config")
    return work


@pytest.mark.slow
@pytest.mark.parametrize("target", list(EXPECTED_RULES))
def test_each_named_target_schedules_only_what_its_figure_needs(fresh, target):
    counts = scheduled(run_snakemake(*LOCAL, "-n", target, cwd=fresh))
    assert set(counts) - {target} == EXPECTED_RULES[target], counts
    # Figures read block tables, never the whole-plan table.
    assert "aggregate_similarity" not in counts


@pytest.mark.slow
def test_fig4_dry_run_trains_only_figure_4s_models(fresh):
    proc = run_snakemake(*LOCAL, "-n", "fig4", cwd=fresh)
    runs = set(re.findall(r"rule train_vae:\n(?:.*\n)*?\s+wildcards: (.*)", proc.stdout))
    assert runs == {f"dataset=dsprites, architecture=conv, objective={o}, hparam=1, seed={s}"
                    for o in ("beta_vae", "dip_vae_ii") for s in (0, 1)}
    assert scheduled(proc)["score_shard"] == 1 and scheduled(proc)["dump_activations"] == 4


@pytest.mark.slow
def test_unconfigured_figure_fails_with_a_clear_message(fresh):
    import yaml

    config = yaml.safe_load((REPO / "config/quick.yaml").read_text())
    del config["figures"]["fig3"]
    (fresh / "nofig3.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake("--configfile=nofig3.yaml", "-n", "fig3", cwd=fresh, check=False)
    assert proc.returncode != 0
    assert "fig3 is not configured: add figures.fig3 to the config" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The README's main job: `snakemake --profile profiles/local` on the embedded default, then
    the report."""
    work = tmp_path_factory.mktemp("embedded")
    shutil.copytree(REPO / "config", work / "config")
    run_snakemake(*LOCAL, cwd=work, timeout=1800)
    run_snakemake(*LOCAL, "--report", "report.html", cwd=work)
    return work


@pytest.mark.slow
@pytest.mark.parametrize("target", NAMED)
def test_every_named_target_is_built_by_the_default_run(embedded, target):
    proc = run_snakemake(*LOCAL, "-n", target, cwd=embedded)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-2000:]


@pytest.mark.slow
def test_figures_are_png_and_pdf_and_tables_parquet_markdown_html(embedded):
    figures = embedded / "results/figures"
    for stem in ("fig1", "fig2", "fig3", "fig4", "fig5a", "fig5b", "fig6a", "fig6b", "fig7", "fig8",
                 "appB_a", "appB_b", "appF", "appG", "appH", "appI", "appJ"):
        assert (figures / f"{stem}.png").read_bytes()[:4] == b"\x89PNG", stem
        assert (figures / f"{stem}.pdf").read_bytes()[:4] == b"%PDF", stem
    for stem in ("table1", "downstream_per_label", "findings"):
        assert len(pd.read_parquet(embedded / f"results/tables/{stem}.parquet")) > 0
        assert (embedded / f"results/tables/{stem}.md").read_text().count("|") > 10
        assert "<table" in (embedded / f"results/tables/{stem}.html").read_text()


@pytest.mark.slow
def test_findings_evaluate_every_claim_on_the_embedded_default(embedded):
    findings = pd.read_parquet(embedded / "results/tables/findings.parquet")
    assert set(findings["claim"]) == set(CLAIMS)
    evaluated = findings.dropna(subset=["supported"])
    assert set(evaluated["claim"]) == set(CLAIMS), findings[findings["supported"].isna()]
    assert findings["value"].notna().all() and findings["threshold"].notna().all()
    # Fig. 3's collapsed model: beta = 200 collapses every latent dimension in 500 steps.
    collapse = findings.set_index("claim").loc["collapsed_sampled_dissimilar"]
    assert collapse["supported"] and collapse["value"] < 0.3


@pytest.mark.slow
def test_rerunning_one_figure_redraws_only_it(embedded):
    (embedded / "results/figures/fig4.png").unlink()
    proc = run_snakemake(*LOCAL, "fig4", cwd=embedded)
    assert scheduled(proc) == {"plot_heatmap": 1, "fig4": 1}
    assert (embedded / "results/figures/fig4.png").stat().st_size > 10_000


@pytest.mark.slow
def test_report_renders_every_figure_grouped_by_section_in_a_real_browser(embedded):
    from .report_browser import check_report, chromium_available

    if not chromium_available():
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/install-debian)")
    check = check_report(embedded / "report.html")
    assert set(check.categories) == {*SECTIONS.values(), "0. Findings: does this run support the paper?",
                                     "5. Transferability reports (which parts to retrain)"}
    shown = {path.rsplit("/", 1)[-1] for path in check.results}
    # each figure/table is its own menu entry under its section, named as in the paper
    entries = {sub: [p.rsplit("/", 1)[-1] for p in paths]
               for subs in check.categories.values() for sub, paths in subs.items()}
    assert "Other" not in entries, check.categories
    assert entries["Figure 3"] == ["fig3.png"] and entries["Appendix B (a)"] == ["appB_a.png"]
    assert entries["Table 1"] == ["table1.html"]
    assert [p.rsplit("/", 1)[-1] for p in check.categories[SECTIONS["dynamics"]]["Figure 4"]] == ["fig4.png"]
    for stem in ("fig1", "fig2", "fig3", "fig4", "fig5a", "fig5b", "fig6a", "fig6b", "fig7", "fig8",
                 "appB_a", "appB_b", "appF", "appG", "appH", "appI", "appJ"):
        assert f"{stem}.png" in shown
    assert {"table1.html", "downstream_per_label.html", "findings.html"} <= shown
    assert check.problems() == [], check.summary()
    assert check.not_loading == [] and check.missing_captions == []
    assert check.broken_links == [] and check.console_errors == []
