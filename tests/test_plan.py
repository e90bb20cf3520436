"""The experiment plan derived from the config: runs, comparisons, shards, cross-key checks."""

import copy
import math

import pytest
import yaml

from vaetransfer import plan, sharding

from .conftest import REPO, load_config


@pytest.fixture
def tiny():
    return load_config(REPO / "tests/configs/tiny.yaml")


@pytest.fixture
def paper():
    return load_config(REPO / "config/config.yaml")


def test_runs_are_sweep_union_times_seeds(tiny):
    runs = plan.runs(tiny)
    assert len(runs) == (2 + 1) * 2
    assert plan.Run("dsprites", "conv", "beta_vae", 4.0, 1) in runs
    assert plan.Run("symsol", "conv", "beta_vae", 4.0, 0) not in runs
    assert runs == sorted(set(runs))


def test_duplicate_sweep_entries_train_once(tiny):
    tiny["training"]["sweeps"].append({"objective": "beta_vae", "values": [1.0], "datasets": ["dsprites"]})
    assert len(plan.runs(tiny)) == 6


def test_paper_scale_counts(paper):
    # Table 6 (conv): 4 objectives x 5 values on 3 datasets; Table 9 (FC): 3 + 1 + 1 + 3 values
    # on the same 3; the classifier on dSprites; the vanilla VAE on Symsol and CelebA; 5 seeds.
    runs = plan.runs(paper)
    assert len(runs) == (4 * 5 * 3 + 8 * 3 + 1 + 2) * 5
    grid: dict = {}
    for r in runs:
        grid.setdefault((r.architecture, r.objective), set()).add(r.hparam)
    grid = {key: sorted(values) for key, values in grid.items()}
    assert grid == {
        ("conv", "beta_vae"): [1, 2, 4, 6, 8], ("conv", "beta_tc_vae"): [1, 2, 4, 6, 8],
        ("conv", "dip_vae_ii"): [1, 2, 5, 10, 20], ("conv", "annealed_vae"): [5, 10, 25, 50, 75],
        ("fc", "beta_vae"): [1, 8, 16], ("fc", "beta_tc_vae"): [2], ("fc", "dip_vae_ii"): [1, 20, 50],
        ("fc", "annealed_vae"): [5], ("classifier", "cross_entropy"): [1],
    }
    assert {r.seed for r in runs} == {0, 1, 2, 3, 4}
    # 5 checkpoints: 15 upper-triangle pairs (with the diagonal) per run.
    assert len(plan.comparisons(paper, "learning_dynamics")) == len(runs) * 15
    # 4 transfer pairs x 25 seed pairs; Appendix H: dSprites' VAE x classifier, 25 seed pairs.
    assert len(plan.comparisons(paper, "cross_domain")) == 4 * 25
    assert len(plan.comparisons(paper, "encoder_vs_classifier")) == 25


def test_checkpoint_schedules_are_the_authors(paper):
    """reference.md 3.2: saves every 11,520 steps on dSprites, 6,000 elsewhere, 5 kept evenly;
    with the authors' ~270k steps they fall in the epochs the authors used."""
    assert plan.checkpoint_steps(paper, "dsprites") == [11520, 80640, 161280, 230400, 300000]
    assert plan.checkpoint_steps(paper, "cars3d") == [6000, 78000, 150000, 222000, 300000]
    authors = copy.deepcopy(paper)
    authors["training"]["steps"] = yaml.safe_load((REPO / "config/authors_steps.yaml").read_text())["training"]["steps"]
    plan.validate_plan(authors)
    batches_per_epoch = {"dsprites": 10368, "cars3d": 247, "smallnorb": 658}
    epochs = {ds: [math.ceil(s / per) for s in plan.checkpoint_steps(authors, ds)]
              for ds, per in batches_per_epoch.items()}
    assert epochs["dsprites"][:3] == [2, 7, 14] and epochs["dsprites"][-1] == 26
    assert epochs["cars3d"] == [25, 292, 559, 826, 1090]
    assert epochs["smallnorb"] == [10, 110, 210, 311, 410]


def test_learning_dynamics_pairs_stay_within_one_run(tiny):
    pairs = plan.comparisons(tiny, "learning_dynamics")
    for a, b in pairs:
        assert a.run == b.run and a.eval_dataset == b.eval_dataset == a.run.dataset
        assert a.step <= b.step
    assert len(pairs) == 6 * 3


def test_cross_domain_pairs_evaluate_both_models_on_target(tiny):
    pairs = plan.comparisons(tiny, "cross_domain")
    assert len(pairs) == 4  # 2 x 2 seed pairs
    for a, b in pairs:
        assert (a.run.dataset, b.run.dataset) == ("dsprites", "symsol")
        assert a.eval_dataset == b.eval_dataset == "symsol"
        assert a.step == b.step == tiny["training"]["steps"]
        assert (a.run.architecture, a.run.objective, a.run.hparam) == plan.VANILLA
    tiny["similarity"]["seed_pairing"] = "same"
    same = plan.comparisons(tiny, "cross_domain")
    assert [(a.run.seed, b.run.seed) for a, b in same] == [(0, 0), (1, 1)]


def test_shards_partition_the_comparisons(tiny):
    for family in plan.families(tiny):
        pairs = plan.comparisons(tiny, family)
        n = sharding.shard_count(tiny, family)
        joined = [p for i in range(n) for p in sharding.shard(tiny, family, i)]
        assert sorted(joined) == sorted(pairs) and len(set(joined)) == len(joined)
        assert all(len(sharding.shard(tiny, family, i)) <= tiny["similarity"]["pairs_per_shard"] for i in range(n))
        with pytest.raises(plan.ConfigError):
            sharding.shard(tiny, family, n)
    assert len(sharding.shard_paths(tiny)) == sum(sharding.shard_count(tiny, f) for f in plan.families(tiny))


def test_blocks_partition_each_family_and_shards_never_span_two(tiny):
    """A block is one aggregated table (what a figure reads): every comparison is in exactly one,
    and a shard never mixes blocks, so a figure needs only its own blocks' shards."""
    for family in plan.families(tiny):
        found = plan.blocks(tiny, family)
        assert sorted(p for pairs in found.values() for p in pairs) == sorted(plan.comparisons(tiny, family))
        for block, pairs in found.items():
            assert {plan.block_id(family, p) for p in pairs} == {block}
            shards = sharding.shards(tiny, family, block)
            assert sorted(p for s in shards for p in s) == sorted(pairs)
    ld = plan.blocks(tiny, "learning_dynamics")
    assert list(ld) == ["dsprites/conv/beta_vae/1", "dsprites/conv/beta_vae/4", "symsol/conv/beta_vae/1"]
    assert list(plan.blocks(tiny, "cross_domain")) == ["dsprites_to_symsol"]
    assert sharding.shard_paths(tiny, "cross_domain") == ["results/similarity/cross_domain/dsprites_to_symsol/shard0.parquet"]
    assert sharding.table_paths(tiny)[-1] == "results/tables/similarity/cross_domain/dsprites_to_symsol.parquet"


def test_paths_follow_one_grammar():
    snap = plan.Snapshot(plan.Run("dsprites", "fc", "beta_vae", 0.5, 3), 100, "symsol")
    assert snap.checkpoint == "results/models/dsprites/fc/beta_vae/0.5/seed3/checkpoints/step100.pt"
    assert snap.activations == "results/activations/dsprites/fc/beta_vae/0.5/seed3/step100/symsol.npz"
    assert plan.format_hparam(1.0) == "1" and plan.format_hparam(1e-4) == "0.0001"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["training"]["sweeps"][0].update(objective="nope"), "training.sweeps[0].objective"),
        (lambda c: c["training"]["sweeps"][0].update(datasets=["cars"]), "'cars' is not a key of datasets"),
        (lambda c: c["training"].update(checkpoint_steps=[5, 10]), "training.checkpoint_steps"),
        (lambda c: c["training"].update(checkpoint_steps=[20, 5, 20]), "training.checkpoint_steps"),
        (lambda c: c["similarity"]["transfer_pairs"].append({"source": "x", "target": "symsol"}), "transfer_pairs[1].source"),
        (lambda c: c["datasets"]["dsprites"].update(generator="mnist"), "datasets.dsprites"),
        (lambda c: c["training"]["sweeps"].pop(1), "no vanilla VAE"),
        (lambda c: c["training"].update(checkpoints={"every": 5, "keep": 2}), "exactly one of checkpoint_steps"),
        (lambda c: c["training"].update(steps={"symsol": 20}), "no value for dataset 'dsprites'"),
        (lambda c: c["training"].update(steps={"default": 20, "mnist": 3}), "['mnist'] are not keys of datasets"),
        (lambda c: c["training"]["sweeps"][0].update(architecture="classifier"),
         "unknown objective 'beta_vae' for architecture 'classifier'"),
        (lambda c: c["training"]["sweeps"].append(
            {"architecture": "classifier", "objective": "cross_entropy", "values": [2], "datasets": ["dsprites"]}),
         "weight=2"),
    ],
)
def test_cross_key_errors_name_the_key(tiny, mutate, message):
    bad = copy.deepcopy(tiny)
    mutate(bad)
    with pytest.raises(plan.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan.validate_plan(bad)


def test_channel_mismatch_is_refused(tiny):
    tiny["datasets"]["cars3d"] = {"source": "download"}
    tiny["training"]["sweeps"].append({"objective": "beta_vae", "values": [1], "datasets": ["cars3d"]})
    tiny["similarity"]["transfer_pairs"].append({"source": "cars3d", "target": "symsol"})
    with pytest.raises(plan.ConfigError, match="different channel counts"):
        plan.validate_plan(tiny)


def test_valid_configs_pass(tiny, paper):
    plan.validate_plan(tiny)
    plan.validate_plan(paper)
    plan.validate_plan(load_config(REPO / "config/quick.yaml"))


def test_shards_are_cost_balanced_and_keep_runs_together():
    """Paper config: shards of comparable estimated cost (LPT), each within the time target,
    each learning-dynamics shard drawn from one run's checkpoints when possible."""
    from tests.conftest import REPO, load_config

    paper = load_config(REPO / "config" / "config.yaml")
    budget = 60 * paper["similarity"]["shard_minutes"]
    for family in plan.families(paper):
        costs = [sharding.estimate_seconds(paper, s) for s in sharding.shards(paper, family)]
        # LPT over ceil(total / budget) shards: at most the mean load plus the largest item;
        # a shard is much cheaper than the costliest only when the pair cap keeps it small
        # (FC and classifier snapshots are cheap).
        blocks = sharding.shards(paper, family)
        assert max(costs) <= 2 * budget
        for cost, block in zip(costs, blocks):
            assert max(costs) / cost < 1.5 or len(block) == paper["similarity"]["pairs_per_shard"]
    for block in sharding.shards(paper, "learning_dynamics")[:20]:
        assert len({a.run for a, _ in block}) == 1


def test_shard_count_follows_the_time_target(tiny):
    """A smaller time target gives more shards; the pair cap still holds."""
    tiny = copy.deepcopy(tiny)
    tiny["similarity"]["n_examples"] = 5000
    tiny["similarity"]["pairs_per_shard"] = 100
    loose = sharding.shard_count(tiny, "learning_dynamics")
    tiny["similarity"]["shard_minutes"] = 5
    tight = sharding.shard_count(tiny, "learning_dynamics")
    assert tight > loose
    for block in sharding.shards(tiny, "learning_dynamics"):
        assert len(block) == 1 or sharding.estimate_seconds(tiny, block) <= 5 * 60


def test_hyper_parameter_outside_an_objectives_values_is_refused(tiny):
    tiny = copy.deepcopy(tiny)
    tiny["training"]["sweeps"].append({"objective": "vae", "values": [2], "datasets": ["dsprites"]})
    with pytest.raises(plan.ConfigError, match=r"training.sweeps\[2\].values: beta=2"):
        plan.validate_plan(tiny)


def test_downstream_jobs_cover_both_encoders_and_every_label(tiny):
    from vaetransfer.downstream import LABELS

    assert plan.downstream_jobs(tiny) == []  # optional section
    config = copy.deepcopy(tiny)
    config["downstream"] = {"pairs": [{"source": "symsol", "target": "dsprites"}], "seeds": [0, 1]}
    jobs = plan.downstream_jobs(config)
    assert len(jobs) == 2 * 2 * len(LABELS["dsprites"])
    assert {(e, t) for e, t, _, _ in jobs} == {("symsol", "dsprites"), ("dsprites", "dsprites")}
    config["downstream"]["seeds"] = [7]
    with pytest.raises(plan.ConfigError, match="downstream.pairs.0..source: no vanilla VAE .* seed 7"):
        plan.validate_plan(config)


def test_transfer_runs_follow_the_variants(tiny):
    from vaetransfer.transfer import variant_layers

    config = copy.deepcopy(tiny)
    config["transfer"] = {"pairs": [{"source": "symsol", "target": "dsprites"}], "seeds": [0], "latents": True,
                          "unfreezing": {"orders": ["inner"], "levels": [2], "latents": ["frozen", "retrained"]}}
    runs = plan.transfer_runs(config)
    assert [r.variant for r in runs] == ["latents", "inner2", "inner2_latents"]
    assert variant_layers("inner2") == ["d/1", "d/2"] and variant_layers("outer2") == ["d/5", "d/6"]
    assert variant_layers("inner2_latents") == ["mean", "log_var", "d/1", "d/2"]
    assert runs[0].checkpoint_dir == "results/transfer/symsol_to_dsprites/latents/seed0/checkpoints"
    config["transfer"]["pairs"] = [{"source": "symsol", "target": "mnist"}]
    with pytest.raises(plan.ConfigError, match="transfer.pairs.0..target"):
        plan.validate_plan(config)
