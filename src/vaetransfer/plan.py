"""The experiment plan: every job of the DAG derived from the (validated) config, in pure Python.

The Snakefile's input functions and target lists come from here, so pytest can check the plan
without Snakemake, and the sweep is computed once at parse time (no checkpoints needed: the
grid is known from the config alone, never from files on disk).

Vocabulary (the same keys appear in config, wildcards, file names and table columns):
- a *run* is one training job: (dataset, architecture, objective, hparam, seed);
- a *snapshot* is a run's checkpoint at `step` evaluated on the evaluation sample of
  `eval_dataset` (its own dataset, or another one for cross-domain comparisons);
- a *comparison* is an ordered pair of snapshots scored on every layer pair;
- a *family* groups comparisons by the question they answer (``learning_dynamics``,
  ``cross_domain``, ``encoder_vs_classifier``); each family's comparisons are cut into
  cost-balanced shards (:func:`vaetransfer.sharding.shards`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

#: Channels of each dataset generator / real dataset; parse-time knowledge (the DAG cannot read
#: files that do not exist yet) used to check that transfer pairs are channel-compatible.
CHANNELS = {"dsprites": 1, "symsol": 1, "smallnorb": 1, "cars3d": 3, "celeba": 3}

#: The paper's "vanilla VAE": the conv beta_vae with beta = 1 (authors' `model=beta_vae
#: param_value=1`), as (architecture, objective, hparam).
VANILLA = ("conv", "beta_vae", 1.0)
#: The Appendix H classifier run of a dataset, as (architecture, objective, hparam).
CLASSIFIER = ("classifier", "cross_entropy", 1.0)

FAMILIES = ("learning_dynamics", "model_pairs", "cross_domain", "encoder_vs_classifier", "retrained_latents")
#: Architectures `training.stack_seeds` trains several seeds of at once (vaetransfer.stacked).
STACKABLE_ARCHITECTURES = ("conv", "fc")


class ConfigError(ValueError):
    """A config value that the schema cannot catch (cross-references between keys)."""


def format_hparam(value: float) -> str:
    """Canonical text of a hyper-parameter value in paths and wildcards: 1.0 -> '1', 0.5 -> '0.5'."""
    return f"{float(value):g}"


@dataclass(frozen=True, order=True)
class Run:
    dataset: str
    architecture: str
    objective: str
    hparam: float
    seed: int

    @property
    def path(self) -> str:
        """Path fragment `<dataset>/<architecture>/<objective>/<hparam>/seed<seed>` of every stage."""
        return (
            f"{self.dataset}/{self.architecture}/{self.objective}/{format_hparam(self.hparam)}/seed{self.seed}"
        )


@dataclass(frozen=True, order=True)
class Snapshot:
    """A checkpoint of a run (a trained model, or a :class:`TransferRun`) on an evaluation sample."""

    run: "Run | TransferRun"
    step: int
    eval_dataset: str

    @property
    def activations(self) -> str:
        stage = "activations/transfer" if isinstance(self.run, TransferRun) else "activations"
        return f"results/{stage}/{self.run.path}/step{self.step}/{self.eval_dataset}.npz"

    @property
    def checkpoint(self) -> str:
        if isinstance(self.run, TransferRun):
            return f"{self.run.checkpoint_dir}/step{self.step}.pt"
        return checkpoint_path(self.run, self.step)


@dataclass(frozen=True, order=True)
class TransferRun:
    """A source-trained vanilla VAE partly retrained on `target` (vaetransfer.transfer)."""

    source: str
    target: str
    variant: str
    seed: int

    @property
    def path(self) -> str:
        return f"{self.source}_to_{self.target}/{self.variant}/seed{self.seed}"

    @property
    def checkpoint_dir(self) -> str:
        return f"results/transfer/{self.path}/checkpoints"

    @property
    def architecture(self) -> str:
        return VANILLA[0]  # transfer starts from the vanilla conv VAE

    @property
    def dataset(self) -> str:
        return self.target  # the data it was (re)trained on


def transfer_runs(config: Mapping[str, Any]) -> list[TransferRun]:
    """Every transfer training job of the optional `transfer` section (none without it)."""
    if "transfer" not in config:
        return []
    from vaetransfer.transfer import variants

    spec = config["transfer"]
    return [
        TransferRun(pair["source"], pair["target"], variant, int(seed))
        for pair in spec["pairs"] for variant in variants(config) for seed in spec["seeds"]
    ]


def downstream_jobs(config: Mapping[str, Any]) -> list[tuple[str, str, int, str]]:
    """(encoder dataset, target dataset, seed, label) of every downstream classification job of the
    optional `downstream` section: for each pair both the source-trained and the target-trained
    vanilla VAE's encoder, each label of the target (:data:`vaetransfer.downstream.LABELS`)."""
    if "downstream" not in config:
        return []
    from vaetransfer.downstream import LABELS

    spec = config["downstream"]
    jobs = {
        (encoder, pair["target"], int(seed), label)
        for pair in spec["pairs"] for encoder in (pair["source"], pair["target"]) for seed in spec["seeds"]
        for label in LABELS[_kind(config, pair["target"])]
    }
    return sorted(jobs)


def checkpoint_dir(run: Run) -> str:
    """A run's checkpoints, one ``step<step>.pt`` per :func:`checkpoint_steps` entry: a directory
    output, because how many checkpoints at which steps depends on the dataset."""
    return f"results/models/{run.path}/checkpoints"


def checkpoint_path(run: Run, step: int) -> str:
    return f"{checkpoint_dir(run)}/step{step}.pt"


def _per_dataset(value: Any, dataset: str) -> Any:
    """A config value given once, or per dataset as {dataset: value, default: value}."""
    if isinstance(value, Mapping):
        return value.get(dataset, value.get("default"))
    return value


def train_steps(config: Mapping[str, Any], dataset: str) -> int:
    """Optimiser updates of every run on `dataset` (`training.steps`, an int or per dataset)."""
    return int(_per_dataset(config["training"]["steps"], dataset))


def checkpoint_steps(config: Mapping[str, Any], dataset: str) -> list[int]:
    """Steps at which runs on `dataset` keep a checkpoint, the last being :func:`train_steps`.

    Either `training.checkpoint_steps` (explicit, the same for all datasets), or the authors'
    scheme (reference.md §3.2) from `training.checkpoints`: a save every `every` steps (per
    dataset: dSprites 11,520, Cars3D and SmallNORB 6,000) plus the final model, of which `keep`
    are kept, evenly spaced over the list (``np.linspace(0, n - 1, keep)`` cast to int, the
    authors' ``selection_type: even``). With the authors' ≈270k steps this gives exactly the
    epochs they used (dSprites 2, 7, 14, 19, 26; Cars3D 25, 292, 559, 826, 1090).
    """
    training, steps = config["training"], train_steps(config, dataset)
    if "checkpoint_steps" in training:
        return [int(s) for s in training["checkpoint_steps"]]
    every = int(_per_dataset(training["checkpoints"]["every"], dataset))
    keep = int(training["checkpoints"]["keep"])
    saved = [*range(every, steps, every), steps]
    positions = sorted({int(i) for i in _linspace(len(saved) - 1, keep)})
    return [saved[i] for i in positions]


def _linspace(stop: int, num: int) -> list[float]:
    """``np.linspace(0, stop, num)`` without numpy (the plan is imported at parse time)."""
    if num == 1:
        return [0.0]
    return [stop * i / (num - 1) for i in range(num)]


# ----------------------------------------------------------------------------- validation


def validate_plan(config: Mapping[str, Any]) -> None:
    """Cross-key checks the JSON schema cannot express; raises ConfigError naming the key."""
    from vaetransfer.trainconfig import objective_registry

    datasets = config["datasets"]
    for name, spec in datasets.items():
        kind = _kind(config, name)
        if kind not in CHANNELS:
            raise ConfigError(
                f"datasets.{name}: unknown {'generator' if spec['source'] == 'procedural' else 'dataset'} "
                f"{kind!r}; known: {sorted(CHANNELS)}"
            )
    for i, sweep in enumerate(config["training"]["sweeps"]):
        architecture = sweep.get("architecture", "conv")
        registry = objective_registry(architecture)
        if sweep["objective"] not in registry:
            raise ConfigError(
                f"training.sweeps[{i}].objective: unknown objective {sweep['objective']!r} for "
                f"architecture {architecture!r}; known: {sorted(registry)}"
            )
        for value in sweep["values"]:
            try:
                registry[sweep["objective"]].check_hparam(value)
            except ValueError as err:
                raise ConfigError(f"training.sweeps[{i}].values: {err}") from None
        for ds in sweep["datasets"]:
            if ds not in datasets:
                raise ConfigError(f"training.sweeps[{i}].datasets: {ds!r} is not a key of datasets")
    _check_schedules(config)
    _check_transfer_pairs(config)
    _check_transfer_section(config)
    from vaetransfer.panels import check_figures

    check_figures(config)


def _check_schedules(config: Mapping[str, Any]) -> None:
    training = config["training"]
    if training.get("stack_seeds") and training.get("fastpath"):
        raise ConfigError("training.fastpath: not available with training.stack_seeds (stacked models run plain)")
    if ("checkpoint_steps" in training) == ("checkpoints" in training):
        raise ConfigError("training: give exactly one of checkpoint_steps and checkpoints")
    for key in ("steps", *(["checkpoints"] if "checkpoints" in training else [])):
        value = training[key]["every"] if key == "checkpoints" else training[key]
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(config["datasets"]) - {"default"})
            if unknown:
                raise ConfigError(f"training.{key}: {unknown} are not keys of datasets (nor 'default')")
    for dataset in sorted({r.dataset for r in runs(config)}):
        for key in ("steps", "checkpoints"):
            value = training.get(key, {})
            value = value.get("every") if key == "checkpoints" else value
            if isinstance(value, Mapping) and _per_dataset(value, dataset) is None:
                raise ConfigError(f"training.{key}: no value for dataset {dataset!r} and no 'default'")
        steps, ckpts = train_steps(config, dataset), checkpoint_steps(config, dataset)
        if sorted(set(ckpts)) != list(ckpts) or ckpts[-1] != steps or ckpts[0] < 1:
            raise ConfigError(
                f"training.checkpoint_steps: {ckpts} must be strictly increasing, >= 1, and end at "
                f"training.steps ({steps}) for dataset {dataset!r}"
            )


def _check_transfer_section(config: Mapping[str, Any]) -> None:
    """`transfer` and `downstream`: each pair's source and target need the vanilla conv VAE for every
    seed of the section (the source model is the starting point or the encoder, the target one the
    reference), and the same channels."""
    trained = {(r.dataset, r.architecture, r.objective, r.hparam, r.seed) for r in runs(config)}
    for section in ("transfer", "downstream"):
        if section not in config:
            continue
        for i, pair in enumerate(config[section]["pairs"]):
            for role in ("source", "target"):
                ds = pair[role]
                if ds not in config["datasets"]:
                    raise ConfigError(f"{section}.pairs[{i}].{role}: {ds!r} is not a key of datasets")
                for seed in config[section]["seeds"]:
                    if (ds, *VANILLA, seed) not in trained:
                        raise ConfigError(
                            f"{section}.pairs[{i}].{role}: no vanilla VAE (conv, beta_vae, beta=1) with seed "
                            f"{seed} is trained on {ds!r}; add it to training.sweeps / training.seeds"
                        )
            if dataset_channels(config, pair["source"]) != dataset_channels(config, pair["target"]):
                raise ConfigError(
                    f"{section}.pairs[{i}]: {pair['source']!r} and {pair['target']!r} have different channel counts"
                )


def _check_transfer_pairs(config: Mapping[str, Any]) -> None:
    datasets = config["datasets"]
    trained = {(r.dataset, r.architecture, r.objective, r.hparam) for r in runs(config)}
    for i, pair in enumerate(config["similarity"].get("transfer_pairs", [])):
        src, tgt = pair["source"], pair["target"]
        for role, ds in (("source", src), ("target", tgt)):
            if ds not in datasets:
                raise ConfigError(f"similarity.transfer_pairs[{i}].{role}: {ds!r} is not a key of datasets")
            if (ds, *VANILLA) not in trained:
                raise ConfigError(
                    f"similarity.transfer_pairs[{i}].{role}: no vanilla VAE (conv, beta_vae, beta=1) is "
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
        Run(ds, sweep.get("architecture", "conv"), sweep["objective"], float(v), int(seed))
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
    if family == "model_pairs":
        return _model_pairs(config)
    if family == "cross_domain":
        return _cross_domain(config)
    if family == "encoder_vs_classifier":
        return _encoder_vs_classifier(config)
    if family == "retrained_latents":
        return _retrained_latents(config)
    raise ConfigError(f"unknown similarity family {family!r}; known: {list(FAMILIES)}")


def _learning_dynamics(config) -> list[tuple[Snapshot, Snapshot]]:
    """Each run against itself across checkpoints on its own data: all pairs i <= j (upper
    triangle with the diagonal, as the authors' `m1_files[i:]`), Fig. 2."""
    pairs = []
    for run in runs(config):
        snaps = [Snapshot(run, s, run.dataset) for s in checkpoint_steps(config, run.dataset)]
        pairs.extend(itertools.combinations_with_replacement(snaps, 2))
    return pairs


def _model_pairs(config) -> list[tuple[Snapshot, Snapshot]]:
    """Two trained configurations on the same dataset, final checkpoints, on that dataset's
    evaluation sample (Figs. 3, 4, Appendices F, G): the ``models`` panels of the configured
    figures (vaetransfer.panels), seed pairs as `similarity.seed_pairing` says."""
    from vaetransfer.panels import model_pairs

    pairs = []
    for ds, x, y in model_pairs(config):
        final = train_steps(config, ds)
        for s_x, s_y in _seed_pairs(config):
            pairs.append((Snapshot(Run(ds, x.architecture, x.objective, x.hparam, s_x), final, ds),
                          Snapshot(Run(ds, y.architecture, y.objective, y.hparam, s_y), final, ds)))
    return pairs


def model_slug(architecture: str, objective: str, hparam: float) -> str:
    """``<architecture>-<objective>-<hparam>``: one trained configuration in a model_pairs block id
    (shared with vaetransfer.panels.Model, so a panel always names the block the plan scores)."""
    return f"{architecture}-{objective}-{format_hparam(hparam)}"


def block_id(family: str, pair: tuple[Snapshot, Snapshot]) -> str:
    """The block (one aggregated table, ``results/tables/similarity/<family>/<block>.parquet``) a
    comparison belongs to: the unit a figure panel reads (vaetransfer.panels.Panel.block).

    learning_dynamics: ``<dataset>/<architecture>/<objective>/<hparam>`` (one configuration, all
    seeds); model_pairs: ``<dataset>/<x>_vs_<y>`` (``<arch>-<objective>-<hparam>`` each);
    cross_domain and retrained_latents: ``<source>_to_<target>``; encoder_vs_classifier: the dataset.
    """
    a, b = pair
    if family == "learning_dynamics":
        return a.run.path.rsplit("/", 1)[0]
    if family == "model_pairs":
        slug = lambda r: model_slug(r.architecture, r.objective, r.hparam)  # noqa: E731
        return f"{a.run.dataset}/{slug(a.run)}_vs_{slug(b.run)}"
    if family == "cross_domain":
        return f"{a.run.dataset}_to_{b.run.dataset}"
    if family == "retrained_latents":
        return f"{a.run.source}_to_{a.run.target}"
    if family == "encoder_vs_classifier":
        return a.run.dataset
    raise ConfigError(f"unknown similarity family {family!r}; known: {list(FAMILIES)}")


def blocks(config: Mapping[str, Any], family: str) -> dict[str, list[tuple[Snapshot, Snapshot]]]:
    """{block id: its comparisons, in plan order} for one family, blocks in first-appearance order."""
    out: dict[str, list[tuple[Snapshot, Snapshot]]] = {}
    for pair in comparisons(config, family):
        out.setdefault(block_id(family, pair), []).append(pair)
    return out


def _cross_domain(config) -> list[tuple[Snapshot, Snapshot]]:
    """Source-trained vs target-trained vanilla VAE, both final, both on target data (Fig. 5a).

    `similarity.seed_pairing`: ``all`` = every (i, j) seed pair (what the authors' heatmap code
    averages: 25 pairs with 5 seeds), ``same`` = the i-th run of both models only (Eq. 6 as worded).
    """
    pairs = []
    for pair in config["similarity"].get("transfer_pairs", []):
        src, tgt = pair["source"], pair["target"]
        for s_src, s_tgt in _seed_pairs(config):
            a = Snapshot(Run(src, *VANILLA, s_src), train_steps(config, src), tgt)
            b = Snapshot(Run(tgt, *VANILLA, s_tgt), train_steps(config, tgt), tgt)
            pairs.append((a, b))
    return pairs


def _seed_pairs(config) -> list[tuple[int, int]]:
    seeds = config["training"]["seeds"]
    if config["similarity"]["seed_pairing"] == "all":
        return list(itertools.product(seeds, seeds))
    return [(s, s) for s in seeds]


def transfer_steps(config: Mapping[str, Any], target: str) -> int:
    """Steps of the transfer runs onto `target` (`transfer.steps`, 0 = the target's training steps)."""
    return config["transfer"]["steps"] or train_steps(config, target)


def _retrained_latents(config) -> list[tuple[Snapshot, Snapshot]]:
    """Fig. 5b: the source VAE with its latent layers retrained on the target (transfer variant
    ``latents``, final) against the target-trained vanilla VAE (final), both on target data; seed
    pairs over `transfer.seeds` as `similarity.seed_pairing` says."""
    from vaetransfer.transfer import variants

    if "transfer" not in config or "latents" not in variants(config):
        return []
    seeds = config["transfer"]["seeds"]
    seed_pairs = itertools.product(seeds, seeds) if config["similarity"]["seed_pairing"] == "all" else zip(seeds, seeds)
    seed_pairs = list(seed_pairs)
    pairs = []
    for pair in config["transfer"]["pairs"]:
        src, tgt = pair["source"], pair["target"]
        for s_tr, s_tgt in seed_pairs:
            a = Snapshot(TransferRun(src, tgt, "latents", s_tr), transfer_steps(config, tgt), tgt)
            b = Snapshot(Run(tgt, *VANILLA, s_tgt), train_steps(config, tgt), tgt)
            pairs.append((a, b))
    return pairs


def _encoder_vs_classifier(config) -> list[tuple[Snapshot, Snapshot]]:
    """Appendix H: the final vanilla conv VAE against the final classifier of the same dataset,
    both on that dataset's evaluation sample, for every dataset that has both (seed pairs as in
    :func:`_cross_domain`)."""
    trained = {(r.dataset, r.architecture, r.objective, r.hparam) for r in runs(config)}
    pairs = []
    for ds in sorted({r.dataset for r in runs(config)}):
        if (ds, *VANILLA) in trained and (ds, *CLASSIFIER) in trained:
            final = train_steps(config, ds)
            for s_vae, s_clf in _seed_pairs(config):
                pairs.append((Snapshot(Run(ds, *VANILLA, s_vae), final, ds),
                              Snapshot(Run(ds, *CLASSIFIER, s_clf), final, ds)))
    return pairs


def families(config: Mapping[str, Any]) -> list[str]:
    return [f for f in FAMILIES if f in config["similarity"]["families"]]


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


def unique_snapshots(pairs: Iterable[tuple[Snapshot, Snapshot]]) -> list[Snapshot]:
    """Snapshots of `pairs` in first-appearance order, each once."""
    return list(dict.fromkeys(s for pair in pairs for s in pair))
