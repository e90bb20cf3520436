"""The experiment plan: every job of the DAG derived from the (validated) config, in pure Python.

The Snakefile's input functions and target lists come from here, so pytest can check the plan
without Snakemake, and the sweep is computed once at parse time (no checkpoints needed: the
grid is known from the config alone, never from files on disk).

Vocabulary (the same keys appear in config, wildcards, file names and table columns):
- a *run* is one training job: (dataset, objective, hparam, seed);
- a *snapshot* is a run's checkpoint at `step` evaluated on the evaluation sample of
  `eval_dataset` (its own dataset, or another one for cross-domain comparisons);
- a *comparison* is an ordered pair of snapshots scored on every layer pair;
- a *family* groups comparisons by the question they answer (``learning_dynamics``,
  ``cross_domain``); each family's comparisons are cut into cost-balanced shards (:func:`shards`).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

#: Channels of each dataset generator / real dataset; parse-time knowledge (the DAG cannot read
#: files that do not exist yet) used to check that transfer pairs are channel-compatible.
CHANNELS = {"dsprites": 1, "symsol": 1, "smallnorb": 1, "cars3d": 3, "celeba": 3}

#: The paper's "vanilla VAE": beta_vae with beta = 1 (authors' `model=beta_vae param_value=1`).
VANILLA = ("beta_vae", 1.0)

FAMILIES = ("learning_dynamics", "cross_domain")


class ConfigError(ValueError):
    """A config value that the schema cannot catch (cross-references between keys)."""


def format_hparam(value: float) -> str:
    """Canonical text of a hyper-parameter value in paths and wildcards: 1.0 -> '1', 0.5 -> '0.5'."""
    return f"{float(value):g}"


@dataclass(frozen=True, order=True)
class Run:
    dataset: str
    objective: str
    hparam: float
    seed: int

    @property
    def path(self) -> str:
        """Path fragment `<dataset>/<objective>/<hparam>/seed<seed>` shared by every stage."""
        return f"{self.dataset}/{self.objective}/{format_hparam(self.hparam)}/seed{self.seed}"


@dataclass(frozen=True, order=True)
class Snapshot:
    run: Run
    step: int
    eval_dataset: str

    @property
    def activations(self) -> str:
        return f"results/activations/{self.run.path}/step{self.step}/{self.eval_dataset}.npz"

    @property
    def checkpoint(self) -> str:
        return checkpoint_path(self.run, self.step)


def checkpoint_path(run: Run, step: int) -> str:
    return f"results/models/{run.path}/step{step}.pt"


# ----------------------------------------------------------------------------- validation


def validate_plan(config: Mapping[str, Any]) -> None:
    """Cross-key checks the JSON schema cannot express; raises ConfigError naming the key."""
    from vaetransfer.objectives import OBJECTIVES

    datasets = config["datasets"]
    for name, spec in datasets.items():
        kind = _kind(config, name)
        if kind not in CHANNELS:
            raise ConfigError(
                f"datasets.{name}: unknown {'generator' if spec['source'] == 'procedural' else 'dataset'} "
                f"{kind!r}; known: {sorted(CHANNELS)}"
            )
    for i, sweep in enumerate(config["training"]["sweeps"]):
        if sweep["objective"] not in OBJECTIVES:
            raise ConfigError(
                f"training.sweeps[{i}].objective: unknown objective {sweep['objective']!r}; "
                f"known: {sorted(OBJECTIVES)}"
            )
        for value in sweep["values"]:
            try:
                OBJECTIVES[sweep["objective"]].check_hparam(value)
            except ValueError as err:
                raise ConfigError(f"training.sweeps[{i}].values: {err}") from None
        for ds in sweep["datasets"]:
            if ds not in datasets:
                raise ConfigError(f"training.sweeps[{i}].datasets: {ds!r} is not a key of datasets")
    steps = config["training"]["steps"]
    ckpts = config["training"]["checkpoint_steps"]
    if sorted(set(ckpts)) != list(ckpts) or ckpts[-1] != steps or ckpts[0] < 1:
        raise ConfigError(
            f"training.checkpoint_steps: {ckpts} must be strictly increasing, >= 1, and end at "
            f"training.steps ({steps})"
        )
    trained = {(r.dataset, r.objective, r.hparam) for r in runs(config)}
    for i, pair in enumerate(config["similarity"].get("transfer_pairs", [])):
        src, tgt = pair["source"], pair["target"]
        for role, ds in (("source", src), ("target", tgt)):
            if ds not in datasets:
                raise ConfigError(f"similarity.transfer_pairs[{i}].{role}: {ds!r} is not a key of datasets")
            if (ds, *VANILLA) not in trained:
                raise ConfigError(
                    f"similarity.transfer_pairs[{i}].{role}: no vanilla VAE (beta_vae, beta=1) is "
                    f"trained on {ds!r}; add it to training.sweeps"
                )
        if dataset_channels(config, src) != dataset_channels(config, tgt):
            raise ConfigError(
                f"similarity.transfer_pairs[{i}]: {src!r} and {tgt!r} have different channel counts"
            )


def _kind(config: Mapping[str, Any], name: str) -> str:
    """The generator of a procedural dataset, or the real dataset's own name."""
    spec = config["datasets"][name]
    return spec.get("generator", name) if spec["source"] == "procedural" else name


def dataset_channels(config: Mapping[str, Any], name: str) -> int:
    return CHANNELS[_kind(config, name)]


# ----------------------------------------------------------------------------- runs and snapshots


def runs(config: Mapping[str, Any]) -> list[Run]:
    """Every training job: the union of the sweeps, crossed with the seeds, sorted, no duplicates."""
    found = {
        Run(ds, sweep["objective"], float(v), int(seed))
        for sweep in config["training"]["sweeps"]
        for ds in sweep["datasets"]
        for v in sweep["values"]
        for seed in config["training"]["seeds"]
    }
    return sorted(found)


def comparisons(config: Mapping[str, Any], family: str) -> list[tuple[Snapshot, Snapshot]]:
    """The ordered snapshot pairs of one family, in a deterministic order that keeps pairs sharing
    a snapshot adjacent (so a shard prepares each snapshot once)."""
    if family == "learning_dynamics":
        return _learning_dynamics(config)
    if family == "cross_domain":
        return _cross_domain(config)
    raise ConfigError(f"unknown similarity family {family!r}; known: {list(FAMILIES)}")


def _learning_dynamics(config) -> list[tuple[Snapshot, Snapshot]]:
    """Each run against itself across checkpoints on its own data: all pairs i <= j (upper
    triangle with the diagonal, as the authors' `m1_files[i:]`), Fig. 2."""
    steps = config["training"]["checkpoint_steps"]
    pairs = []
    for run in runs(config):
        snaps = [Snapshot(run, s, run.dataset) for s in steps]
        pairs.extend(itertools.combinations_with_replacement(snaps, 2))
    return pairs


def _cross_domain(config) -> list[tuple[Snapshot, Snapshot]]:
    """Source-trained vs target-trained vanilla VAE, both final, both on target data (Fig. 5a).

    `similarity.seed_pairing`: ``all`` = every (i, j) seed pair (what the authors' heatmap code
    averages: 25 pairs with 5 seeds), ``same`` = the i-th run of both models only (Eq. 6 as worded).
    """
    final = config["training"]["steps"]
    seeds = config["training"]["seeds"]
    pairing = config["similarity"]["seed_pairing"]
    seed_pairs = (
        list(itertools.product(seeds, seeds)) if pairing == "all" else [(s, s) for s in seeds]
    )
    pairs = []
    for pair in config["similarity"].get("transfer_pairs", []):
        src, tgt = pair["source"], pair["target"]
        for s_src, s_tgt in seed_pairs:
            a = Snapshot(Run(src, *VANILLA, s_src), final, tgt)
            b = Snapshot(Run(tgt, *VANILLA, s_tgt), final, tgt)
            pairs.append((a, b))
    return pairs


def families(config: Mapping[str, Any]) -> list[str]:
    return [f for f in FAMILIES if f in config["similarity"]["families"]]


def shards(config: Mapping[str, Any], family: str) -> list[list[tuple[Snapshot, Snapshot]]]:
    """The comparisons of `family` in cost-balanced shards (greedy LPT bin packing).

    1. Comparisons are grouped so that pairs sharing snapshots stay together (learning dynamics:
       one run; cross-domain: one source snapshot against its target partners), and a group is cut,
       in order, into items of at most `similarity.pairs_per_shard` pairs and (when it has more
       than one pair) at most `similarity.shard_minutes` of estimated cost.
    2. Each item's cost is estimated by :mod:`vaetransfer.costmodel` from the layer widths and
       `n_examples`: preparing its distinct snapshots plus scoring its pairs.
    3. k = max(ceil(total cost / shard_minutes), ceil(pairs / pairs_per_shard)) shards (at most one
       per item); items are placed largest first into the currently cheapest shard that has room
       for their pairs (Graham's LPT: without the pair cap, the costliest shard is within 4/3 of
       the best possible), kept in plan order inside a shard.
    Deterministic: the same config always gives the same shards.
    """
    sim = config["similarity"]
    cap, budget = sim["pairs_per_shard"], 60.0 * sim["shard_minutes"]
    items: list[list[tuple[Snapshot, Snapshot]]] = []
    for group in _groups(config, family):
        item: list[tuple[Snapshot, Snapshot]] = []
        for pair in group:
            if item and (len(item) >= cap or estimate_seconds(config, [*item, pair]) > budget):
                items.append(item)
                item = []
            item.append(pair)
        if item:
            items.append(item)
    if not items:
        return []
    costs = [estimate_seconds(config, item) for item in items]
    n_pairs = sum(len(item) for item in items)
    k = min(len(items), max(1, math.ceil(sum(costs) / budget), math.ceil(n_pairs / cap)))
    loads, sizes = [0.0] * k, [0] * k
    members: list[list[int]] = [[] for _ in range(k)]
    for i in sorted(range(len(items)), key=lambda i: (-costs[i], i)):
        room = [b for b in range(len(loads)) if sizes[b] + len(items[i]) <= cap]
        if not room:  # every shard is full: open another (the pair cap is a hard limit)
            loads.append(0.0), sizes.append(0), members.append([])
            room = [len(loads) - 1]
        b = min(room, key=lambda b: (loads[b], b))
        members[b].append(i)
        loads[b] += costs[i]
        sizes[b] += len(items[i])
    bins = sorted((sorted(m) for m in members if m), key=lambda m: m[0])
    return [[pair for i in m for pair in items[i]] for m in bins]


def _groups(config: Mapping[str, Any], family: str) -> list[list[tuple[Snapshot, Snapshot]]]:
    """Consecutive comparisons that share a first snapshot's run (learning dynamics) or the first
    snapshot itself (cross-domain): the units that the sharding keeps together when it can."""
    key = (lambda pair: pair[0].run) if family == "learning_dynamics" else (lambda pair: pair[0])
    return [list(g) for _, g in itertools.groupby(comparisons(config, family), key=key)]


def snapshot_widths(config: Mapping[str, Any], snapshot: Snapshot) -> tuple[int, ...]:
    """Flattened widths of a snapshot's representations (its input is the evaluation dataset)."""
    from vaetransfer.costmodel import layer_widths

    return tuple(layer_widths(dataset_channels(config, snapshot.eval_dataset)).values())


def estimate_seconds(config: Mapping[str, Any], pairs: list[tuple[Snapshot, Snapshot]]) -> float:
    """Estimated single-job seconds to score `pairs` (cost model at the reference GEMM rates)."""
    from vaetransfer import costmodel

    n, metrics = config["similarity"]["n_examples"], tuple(config["similarity"]["metrics"])
    flops = costmodel.Flops()
    for snap in unique_snapshots(pairs):
        flops += _prepare_flops(snapshot_widths(config, snap), n, metrics)
    for a, b in pairs:
        flops += _pair_flops(snapshot_widths(config, a), snapshot_widths(config, b), n, metrics)
    return flops.seconds()


@functools.lru_cache(maxsize=None)
def _prepare_flops(widths, n, metrics):
    from vaetransfer import costmodel

    return costmodel.prepare_flops(widths, n, metrics)


@functools.lru_cache(maxsize=None)
def _pair_flops(widths_x, widths_y, n, metrics):
    from vaetransfer import costmodel

    return costmodel.pair_flops(widths_x, widths_y, n, metrics)


def shard_resources(config: Mapping[str, Any], pairs: list[tuple[Snapshot, Snapshot]]) -> dict[str, int]:
    """Memory (MB), time (min) and scratch disk (MB) of one shard job at its first attempt.

    Memory = process overhead + the transient working set of its widest representation + the
    prepared data kept in memory (at most `similarity.memory_mb`; the rest is spilled to disk).
    Time = 3x the cost model's estimate + 10 min. Disk = everything prepared (worst-case spill).
    """
    from vaetransfer import costmodel

    sim = config["similarity"]
    n, metrics = sim["n_examples"], sim["metrics"]
    widths = [snapshot_widths(config, s) for s in unique_snapshots(pairs)]
    transient = max(costmodel.transient_bytes(w, n) for w in widths)
    kept = sum(costmodel.prepared_bytes(w, n, metrics) for w in widths)
    memory = costmodel.PROCESS_BYTES + transient + min(kept, sim["memory_mb"] * 2**20)
    return {
        "mem_mb": memory // 2**20 + 500,
        "runtime": int(10 + 3 * estimate_seconds(config, pairs) / 60),
        "disk_mb": kept // 2**20 + 1000,
    }


def load_config(path) -> dict:
    """Read a config file and validate it against the workflow's schema, defaults filled in (what
    the Snakefile does), for tools that run outside Snakemake (``vaetransfer footprint``)."""
    from pathlib import Path

    import yaml
    from snakemake.utils import validate

    schema = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
    config = yaml.safe_load(Path(path).read_text())
    validate(config, str(schema))
    validate_plan(config)
    return config


def shard_count(config: Mapping[str, Any], family: str) -> int:
    return len(shards(config, family))


def shard(config: Mapping[str, Any], family: str, index: int) -> list[tuple[Snapshot, Snapshot]]:
    """Comparisons of shard `index` (0-based) of `family`."""
    blocks = shards(config, family)
    if not 0 <= index < len(blocks):
        raise ConfigError(f"shard {index} of family {family!r} does not exist")
    return blocks[index]


def shard_paths(config: Mapping[str, Any]) -> list[str]:
    return [
        f"results/similarity/{family}/shard{i}.parquet"
        for family in families(config)
        for i in range(shard_count(config, family))
    ]


def unique_snapshots(pairs: Iterable[tuple[Snapshot, Snapshot]]) -> list[Snapshot]:
    """Snapshots of `pairs` in first-appearance order, each once."""
    return list(dict.fromkeys(s for pair in pairs for s in pair))
