# Config validation, the experiment plan, wildcard constraints and input functions.
# Everything here runs at parse time and reads only the config: no file produced by the workflow.
import functools
import re
from argparse import Namespace

from snakemake.utils import validate

from vaetransfer import panels, plan, sharding
from vaetransfer.transfer import VARIANT_PATTERN

# Schema first (unknown keys, bad types and values), then cross-key checks; both stop the run
# before any job starts, with a message naming the key at fault.
validate(config, schema="../schemas/config.schema.yaml")
try:
    plan.validate_plan(config)
except plan.ConfigError as err:
    raise WorkflowError(f"Invalid config: {err}") from None

RUNS = plan.runs(config)
SEEDS = config["training"]["seeds"]
TRANSFER_RUNS = plan.transfer_runs(config)
DOWNSTREAM_JOBS = plan.downstream_jobs(config)
# Every block's shards, computed once: the input functions of all score_shard jobs index into it.
# A block (plan.block_id) is the unit one aggregated table holds and a figure panel reads.
BLOCKS = {family: plan.blocks(config, family) for family in plan.families(config)}
SHARDS = {
    (family, block): sharding.pack(config, family, pairs)
    for family, found in BLOCKS.items()
    for block, pairs in found.items()
}
# Shards in plan order. Activation dumps are given priorities in this order and shards a higher
# one, so each shard is scored (and its temp() dumps removed) soon after its dumps are written:
# this is what bounds peak disk (README, "Disk").
SHARD_ORDER = [key + (i,) for key, found in SHARDS.items() for i in range(len(found))]
SNAPSHOT_RANK = {}
for _rank, (_family, _block, _i) in enumerate(SHARD_ORDER):
    for _snap in plan.unique_snapshots(SHARDS[_family, _block][_i]):
        SNAPSHOT_RANK.setdefault(_snap.activations, _rank)
SCORE_PRIORITY = len(SHARD_ORDER) + 20


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names))


def get_download_resources(config):
    """{dataset: its Resources} for every `source: download` dataset, URL/checksum overrides
    (`datasets.<name>.files`) applied; WorkflowError naming the key of a bad override.
    """
    from vaetransfer.data import download, real

    out = {}
    for name, spec in config["datasets"].items():
        if spec["source"] != "download":
            if "files" in spec:
                raise WorkflowError(
                    f"Invalid config: datasets.{name}.files: only for source: download"
                )
            continue
        try:
            out[name] = download.apply_overrides(
                name, real.resources(name), spec.get("files")
            )
        except ValueError as err:
            raise WorkflowError(f"Invalid config: {err}") from None
    return out


def _alternatives_or_none(names):
    """A regex matching exactly one of `names`, or nothing at all when there are none."""
    return _alternatives(names) if names else "(?!)"


# Real datasets (source: download): their original files, with any mirror of
# `datasets.<name>.files` applied; an override naming no file of the dataset stops the run here.
DOWNLOADS = get_download_resources(config)
# The `download` rule matches only declared files of configured real datasets.
DOWNLOAD_DATASET_PATTERN = _alternatives_or_none(DOWNLOADS)
DOWNLOAD_FILENAME_PATTERN = _alternatives_or_none(
    {r.filename for resources in DOWNLOADS.values() for r in resources}
)


def get_prepare_inputs(wildcards):
    """The original files of a real dataset (resources/downloads/<dataset>/<filename>); none for
    a procedural one."""
    return [str(r.destination()) for r in DOWNLOADS.get(wildcards.dataset, ())]


def get_all_targets():
    """Default targets of `snakemake`: the aggregated table, the transfer outputs, every figure
    and table of the paper that the config allows, and the findings."""
    return [
        "results/tables/similarity.parquet",
        *get_transfer_targets(),
        *(f for name in configured_figures() for f in figure_files(name)),
        "results/tables/findings.parquet",
    ]


def get_dataset_files(name):
    return {
        "images": f"results/data/{name}/images.npy",
        "meta": f"results/data/{name}/meta.json",
    }


def get_train_data(wildcards):
    return {
        **get_dataset_files(wildcards.dataset),
        "factors": f"results/data/{wildcards.dataset}/factors.parquet",
    }


def _run(wildcards):
    return plan.Run(
        wildcards.dataset,
        wildcards.architecture,
        wildcards.objective,
        float(wildcards.hparam),
        int(wildcards.seed),
    )


def get_train_params(wildcards):
    """The training settings of one run, resolved per dataset (steps, checkpoint schedule) and
    per objective (its options): a change elsewhere in the config does not rerun this job.
    """
    training = config["training"]
    options = training.get("objective_options", {}).get(wildcards.objective, {})
    keys = (
        "batch_size",
        "learning_rate",
        "latent_dim",
        "device",
        "resume_every",
        "fastpath",
    )
    classifier = wildcards.architecture == "classifier"
    return {
        **{key: training[key] for key in keys},
        "steps": plan.train_steps(config, wildcards.dataset),
        "checkpoint_steps": plan.checkpoint_steps(config, wildcards.dataset),
        "validation_fraction": training[
            "classifier_validation_fraction" if classifier else "validation_fraction"
        ],
        "objective_options": options,
    }


def get_activation_inputs(wildcards):
    return {
        "checkpoints": plan.checkpoint_dir(_run(wildcards)),
        "indices": f"results/data/{wildcards.eval_dataset}/eval_indices.npy",
        **get_dataset_files(wildcards.eval_dataset),
    }


def get_checkpoint_file(wildcards):
    return plan.checkpoint_path(_run(wildcards), int(wildcards.step))


def activation_output(path):
    """Activation dumps are temp() unless `similarity.keep_activations` (2 GB per snapshot and
    evaluation dataset at n = 5,000)."""
    return path if config["similarity"]["keep_activations"] else temp(path)


def get_dump_priority(wildcards):
    """Earlier shards' snapshots first (see SHARD_ORDER); dumps no shard reads come last."""
    path = plan.Snapshot(
        _run(wildcards), int(wildcards.step), wildcards.eval_dataset
    ).activations
    return 10 + len(SHARD_ORDER) - SNAPSHOT_RANK.get(path, len(SHARD_ORDER))


def get_shard_resources(wildcards, attempt):
    """Memory (MB), time (min) and scratch disk (MB) of a shard from the cost model, growing with
    each retry: the engine keeps `similarity.memory_mb` of prepared data, spills the rest.
    """
    first = _first_attempt_resources(
        wildcards.family, wildcards.block, int(wildcards.shard)
    )
    return {key: value * attempt for key, value in first.items()}


@functools.cache
def _first_attempt_resources(family, block, index):
    # Once per shard: mem_mb, runtime and disk_mb each ask for it.
    return sharding.shard_resources(config, SHARDS[family, block][index])


def _shard(wildcards):
    return SHARDS[wildcards.family, wildcards.block][int(wildcards.shard)]


def get_block_shards(wildcards):
    """The shards of one block, which its aggregated table concatenates."""
    n = len(SHARDS[wildcards.family, wildcards.block])
    return [sharding.shard_path(wildcards.family, wildcards.block, i) for i in range(n)]


def get_shard_activations(wildcards):
    pairs = _shard(wildcards)
    # The sidecars too: they are temp() like the arrays, so they must be declared to be kept.
    return [
        path
        for snap in plan.unique_snapshots(pairs)
        for path in (snap.activations, snap.activations.removesuffix(".npz") + ".json")
    ]


def get_shard_pairs(wildcards):
    """The shard's snapshot pairs as pairs of activation paths (the script reads identities
    from the sidecars, never from these paths)."""
    pairs = _shard(wildcards)
    return [[a.activations, b.activations] for a, b in pairs]


def get_figure_params(name):
    return config["figures"][name]


HEATMAP_FIGURES = panels.heatmap_figures(config)


def get_figure_tables(wildcards):
    """The block tables a heatmap figure's panels read (and nothing else: `snakemake fig4 -n`
    schedules only what Figure 4 needs)."""
    return sorted({p.table for p in HEATMAP_FIGURES[wildcards.fig]})


def _transfer_seed():
    return (config.get("transfer") or {}).get("seeds", SEEDS)[0]


def _pair_figure_sources():
    """{file name: (png, pdf) it copies} of the configured Fig. 6 / Appendix B / Figs. 7, 8."""
    out = {}
    for name in panels.PAIR_FIGURES:
        if name not in config["figures"]:
            continue
        source, target, seed = panels.pair_figure(config, name)
        if name in ("fig7", "fig8"):
            stem = f"results/figures/reconstructions/{source}_to_{target}"
            out[name] = (f"{stem}.png", f"{stem}.pdf")
            continue
        folder = f"results/figures/unfreezing/{source}_to_{target}/seed{seed}"
        order = "inner" if name == "fig6" else "outer"
        present = config["transfer"]["unfreezing"]["latents"]
        for panel, latents in (("a", "frozen"), ("b", "retrained")):
            if latents in present:
                label = f"fig6{panel}" if name == "fig6" else f"appB_{panel}"
                grid = f"{folder}/{order}_{latents}"
                out[label] = (f"{grid}.png", f"{grid}.pdf")
    return out


PAIR_FIGURE_FILES = _pair_figure_sources()


def get_pair_figure_files(wildcards):
    return PAIR_FIGURE_FILES[wildcards.pfig]


def get_pair_figure_source(wildcards):
    """What holds a pair figure's drawing - the reconstructions' PNG and PDF, or the
    unfreezing grids' directory."""
    png, pdf = PAIR_FIGURE_FILES[wildcards.pfig]
    if png.startswith("results/figures/unfreezing/"):
        return [png.rsplit("/", 1)[0]]
    return [png, pdf]


def _figure_name(wildcards):
    return getattr(wildcards, "fig", None) or getattr(wildcards, "pfig", None) or "appJ"


def get_report_section(wildcards):
    from vaetransfer.captions import section

    return section(_figure_name(wildcards))


def get_report_label(wildcards):
    """The report subcategory: the figure's name in the paper ("Figure 3", "Table 1")."""
    from vaetransfer.captions import label

    return label(_figure_name(wildcards))


def get_caption(wildcards):
    """The figure's caption (reST), in the paper's terms, with this config's panels."""
    from vaetransfer.captions import caption, figure_of

    name = _figure_name(wildcards)
    return caption(name, config["figures"].get(figure_of(name), {}))


def _loss_runs(dataset):
    return [r for r in RUNS if r.dataset == dataset]


def get_dataset_losses(wildcards):
    return [
        f"results/models/{r.path}/losses.parquet" for r in _loss_runs(wildcards.dataset)
    ]


def get_dataset_loss_runs(wildcards):
    """Identity of each run's loss log (aggregation never parses paths)."""
    return [
        {
            "dataset": r.dataset,
            "architecture": r.architecture,
            "objective": r.objective,
            "hparam": r.hparam,
            "seed": r.seed,
            "losses": f"results/models/{r.path}/losses.parquet",
        }
        for r in _loss_runs(wildcards.dataset)
    ]


def get_loss_tables(wildcards):
    spec = config["figures"].get("appJ", {})
    datasets = spec.get("datasets") or sorted({r.dataset for r in RUNS})
    return [f"results/tables/losses/{ds}.parquet" for ds in datasets]


def configured_figures():
    """Every figure/table name that this config can build: fig1 and appJ always, the heatmap and
    pair figures configured under `figures`, table1 and appA with a `downstream` section.
    """
    names = ["fig1", *config["figures"], "appJ"]
    if DOWNSTREAM_JOBS:
        names += ["table1", "appA"]
    return list(dict.fromkeys(names))


def figure_files(name):
    """The files of one named figure or table (the inputs of its target rule)."""
    pair = lambda stem: [f"results/figures/{stem}.png", f"results/figures/{stem}.pdf"]
    if name in ("fig1", "appJ"):
        return pair(name)
    if name in ("table1", "appA"):
        if not DOWNSTREAM_JOBS:
            raise WorkflowError(f"{name} needs a `downstream` section in the config")
        stem = "table1" if name == "table1" else "downstream_per_label"
        return [f"results/tables/{stem}.{ext}" for ext in ("parquet", "md", "html")]
    if name not in config["figures"]:
        raise WorkflowError(
            f"{name} is not configured: add figures.{name} to the config (config/README.md)"
        )
    if name in HEATMAP_FIGURES:
        return pair(name)
    if name in ("fig6", "appB"):
        prefix = "fig6" if name == "fig6" else "appB_"
        return [
            f
            for label in PAIR_FIGURE_FILES
            if label.startswith(prefix)
            for f in pair(label)
        ]
    return pair(name)


def get_findings_inputs(wildcards):
    """What the claims are checked on (vaetransfer.findings): the tables of the configured
    Figs. 2-5 and Appendix G/I panels, the cross-domain table of each Fig. 5b pair (the "before"
    of retraining the latents, when scored), the Fig. 6 / Appendix B pairs' unfreezing losses
    and Table 1 (whichever are configured)."""
    claims = ("fig2", "fig3", "fig4", "fig5a", "fig5b", "appG", "appI")
    shown = [p for name in claims for p in HEATMAP_FIGURES.get(name, [])]
    scored = set(BLOCKS.get("cross_domain", {}))
    before = [
        sharding.table_path("cross_domain", p.block)
        for p in shown
        if p.kind == "retrained_latents" and p.block in scored
    ]
    unfreezing = set()
    for name in ("fig6", "appB"):
        if name in config["figures"]:
            source, target, seed = panels.pair_figure(config, name)
            unfreezing.add(
                f"results/tables/unfreezing/{source}_to_{target}/seed{seed}.parquet"
            )
    return {
        "similarity": sorted({p.table for p in shown} | set(before)),
        "unfreezing": sorted(unfreezing),
        "table1": ["results/tables/table1.parquet"] if DOWNSTREAM_JOBS else [],
    }


# ----------------------------------------------------------------------------- transfer


def _vanilla_dir(dataset, seed):
    return plan.checkpoint_dir(plan.Run(dataset, *plan.VANILLA, int(seed)))


def get_transfer_targets():
    """The transfer experiments' outputs (none without a `transfer` section)."""
    if not TRANSFER_RUNS:
        return []
    spec = config["transfer"]
    pairs = [f"{p['source']}_to_{p['target']}" for p in spec["pairs"]]
    # A report needs the pair's cross-domain CKA too (similarity.transfer_pairs).
    scored = {
        f"{p['source']}_to_{p['target']}"
        for p in config["similarity"].get("transfer_pairs", [])
        if "cross_domain" in config["similarity"]["families"]
    }
    return [
        *(
            f"results/tables/unfreezing/{pair}/seed{s}.parquet"
            for pair in pairs
            for s in spec["seeds"]
        ),
        *(f"results/figures/reconstructions/{pair}.png" for pair in pairs),
        *(f"results/reports/{pair}.html" for pair in pairs if pair in scored),
    ]


def get_transfer_inputs(wildcards):
    return {
        "source": _vanilla_dir(wildcards.source, wildcards.seed),
        **get_dataset_files(wildcards.target),
    }


def get_transfer_params(wildcards):
    """Target-side run settings (steps, batch, lr, split) of a transfer run, its only checkpoint
    being the final model (the authors kept no intermediate ones), and what it retrains.
    """
    from vaetransfer.transfer import variant_layers

    run = get_train_params(
        Namespace(dataset=wildcards.target, architecture="conv", objective="beta_vae")
    )
    steps = plan.transfer_steps(config, wildcards.target)
    seed = int(wildcards.seed)
    return {
        **run,
        "steps": steps,
        "checkpoint_steps": [steps],
        "init_checkpoint": plan.checkpoint_path(
            plan.Run(wildcards.source, *plan.VANILLA, seed),
            plan.train_steps(config, wildcards.source),
        ),
        "retrain_layers": variant_layers(wildcards.variant),
    }


def get_unfreezing_inputs(wildcards):
    """The target data, the target- and source-trained VAEs and every transfer variant of a pair."""
    pair = f"{wildcards.source}_to_{wildcards.target}"
    runs = [
        r
        for r in TRANSFER_RUNS
        if (r.source, r.target, r.seed)
        == (wildcards.source, wildcards.target, int(wildcards.seed))
    ]
    return {
        **get_dataset_files(wildcards.target),
        "target_model": _vanilla_dir(wildcards.target, wildcards.seed),
        "source_model": _vanilla_dir(wildcards.source, wildcards.seed),
        "variants": [r.checkpoint_dir for r in runs],
    }


def _vanilla_final(dataset, seed):
    run = plan.Run(dataset, *plan.VANILLA, int(seed))
    return plan.checkpoint_path(run, plan.train_steps(config, dataset))


def get_unfreezing_models(wildcards):
    """{"target": ..., "source": ..., <variant>: ...}: each model's final checkpoint file."""
    seed = int(wildcards.seed)
    steps = plan.transfer_steps(config, wildcards.target)
    models = {
        "target": _vanilla_final(wildcards.target, seed),
        "source": _vanilla_final(wildcards.source, seed),
    }
    for r in TRANSFER_RUNS:
        if (r.source, r.target, r.seed) == (wildcards.source, wildcards.target, seed):
            models[r.variant] = f"{r.checkpoint_dir}/step{steps}.pt"
    return models


def get_report_downstream(wildcards):
    """Table 1 for a report when the pair's classification is configured, else nothing."""
    pairs = config.get("downstream", {}).get("pairs", [])
    wanted = {"source": wildcards.source, "target": wildcards.target}
    return ["results/tables/table1.parquet"] if wanted in pairs else []


def _transfer_run(wildcards):
    return plan.TransferRun(
        wildcards.source, wildcards.target, wildcards.variant, int(wildcards.seed)
    )


def get_transfer_activation_inputs(wildcards):
    return {
        "checkpoints": _transfer_run(wildcards).checkpoint_dir,
        "indices": f"results/data/{wildcards.eval_dataset}/eval_indices.npy",
        **get_dataset_files(wildcards.eval_dataset),
    }


def get_transfer_checkpoint_file(wildcards):
    snap = plan.Snapshot(
        _transfer_run(wildcards), int(wildcards.step), wildcards.eval_dataset
    )
    return snap.checkpoint


def get_transfer_dump_priority(wildcards):
    snap = plan.Snapshot(
        _transfer_run(wildcards), int(wildcards.step), wildcards.eval_dataset
    )
    return 10 + len(SHARD_ORDER) - SNAPSHOT_RANK.get(snap.activations, len(SHARD_ORDER))
