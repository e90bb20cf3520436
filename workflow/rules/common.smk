# Config validation, the experiment plan, wildcard constraints and input functions.
# Everything here runs at parse time and reads only the config: no file produced by the workflow.
import re

from snakemake.utils import validate

from vaetransfer import plan

# Schema first (unknown keys, bad types and values), then cross-key checks; both stop the run
# before any job starts, with a message naming the key at fault.
validate(config, schema="../schemas/config.schema.yaml")
try:
    plan.validate_plan(config)
except plan.ConfigError as err:
    raise WorkflowError(f"Invalid config: {err}") from None

RUNS = plan.runs(config)
# Every family's shards, computed once: the input functions of all score_shard jobs index into it.
SHARDS = {family: plan.shards(config, family) for family in plan.families(config)}
STEPS = config["training"]["checkpoint_steps"]
FINAL_STEP = config["training"]["steps"]


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names))


def get_all_targets():
    """Default targets of `snakemake`: the aggregated table and every configured figure."""
    figures = [
        f"results/figures/{name}.{ext}"
        for name in config["figures"]
        for ext in ("png", "pdf")
    ]
    return ["results/tables/similarity.parquet", *figures]


def get_dataset_files(name):
    return {
        "images": f"results/data/{name}/images.npy",
        "meta": f"results/data/{name}/meta.json",
    }


def get_train_data(wildcards):
    return get_dataset_files(wildcards.dataset)


def get_activation_inputs(wildcards):
    run = f"{wildcards.dataset}/{wildcards.objective}/{wildcards.hparam}/seed{wildcards.seed}"
    return {
        "checkpoint": f"results/models/{run}/step{wildcards.step}.pt",
        "indices": f"results/data/{wildcards.eval_dataset}/eval_indices.npy",
        **get_dataset_files(wildcards.eval_dataset),
    }


def _shard(wildcards):
    return SHARDS[wildcards.family][int(wildcards.shard)]


def get_shard_activations(wildcards):
    pairs = _shard(wildcards)
    return [snap.activations for snap in plan.unique_snapshots(pairs)]


def get_shard_pairs(wildcards):
    """The shard's snapshot pairs as pairs of activation paths (the script reads identities
    from the sidecars, never from these paths)."""
    pairs = _shard(wildcards)
    return [[a.activations, b.activations] for a, b in pairs]


def get_figure_params(name):
    return config["figures"][name]
