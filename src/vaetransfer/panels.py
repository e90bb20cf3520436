"""Heatmap panels: which comparison family, which aggregated table (block) and which rows one
heatmap of a figure shows.

A figure's config entry (``figures.<name>``) is either one panel's keys or ``{panels: [...]}``
plus keys shared by every panel (``metric``). A panel's ``kind`` defaults to the figure's
(:data:`FIGURE_KINDS`):

=================== ============================================== ===============================
kind                keys                                           family / block (table)
=================== ============================================== ===============================
dynamics            dataset, [architecture], objective, hparam,    learning_dynamics /
                    [step_x: first|all|<step>], [step_y: final]    ``<ds>/<arch>/<obj>/<hp>``
models              dataset, x: {[architecture], objective,        model_pairs /
                    hparam}, y: {...}                              ``<ds>/<x>_vs_<y>``
cross_domain        source, target                                 cross_domain / ``<src>_to_<tgt>``
retrained_latents   source, target                                 retrained_latents / same
classifier          dataset                                        encoder_vs_classifier / ``<ds>``
=================== ============================================== ===============================

Every panel is checked against the plan at parse time (:func:`check_figures`), so a figure can
never ask for a comparison the workflow does not score. Each cell of a heatmap is the mean over
the seed pairs present (reference.md §5.6; ``similarity.seed_pairing`` decides which are scored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from vaetransfer.plan import CLASSIFIER, VANILLA, ConfigError, format_hparam, model_slug

#: Heatmap figures and the kind of their panels. ``appG`` (the fully-connected VAE) and ``appF``
#: (Procrustes vs CKA) take panels of any kind; the default is shown.
FIGURE_KINDS = {
    "fig2": "dynamics", "fig3": "models", "fig4": "models", "fig5a": "cross_domain",
    "fig5b": "retrained_latents", "appF": "models", "appG": "dynamics", "appH": "classifier",
    "appI": "dynamics",
}
#: Figures drawn from other tables: progressive unfreezing (Fig. 6 innermost first, Appendix B
#: outermost first) and cross-domain reconstructions (Figs. 7, 8) of one source -> target pair;
#: appJ the convergence curves (loss tables).
PAIR_FIGURES = ("fig6", "appB", "fig7", "fig8")
OTHER_FIGURES = (*PAIR_FIGURES, "appJ")
KIND_FAMILY = {
    "dynamics": "learning_dynamics", "models": "model_pairs", "cross_domain": "cross_domain",
    "retrained_latents": "retrained_latents", "classifier": "encoder_vs_classifier",
}
PANEL_KEYS = {
    "dynamics": {"dataset", "architecture", "objective", "hparam", "step_x", "step_y"},
    "models": {"dataset", "x", "y"},
    "cross_domain": {"source", "target"},
    "retrained_latents": {"source", "target"},
    "classifier": {"dataset"},
}
SHARED_KEYS = {"kind", "metric", "title"}
#: Keys of a figure entry that are not panel keys (read by the figure functions themselves).
FIGURE_KEYS = {"panels", "metrics", "datasets"}


class EmptySelection(LookupError):
    """The table holds no rows for the requested panel."""


@dataclass(frozen=True)
class Model:
    """A trained configuration (all its seeds): architecture, objective, hyper-parameter."""

    architecture: str
    objective: str
    hparam: float

    @property
    def slug(self) -> str:
        return model_slug(self.architecture, self.objective, self.hparam)

    @property
    def label(self) -> str:
        arch = "" if self.architecture == "conv" else f"{self.architecture} "
        return f"{arch}{self.objective}, {format_hparam(self.hparam)}"


@dataclass(frozen=True)
class Panel:
    kind: str
    metric: str = "cka"
    dataset: str | None = None
    x: Model | None = None
    y: Model | None = None
    source: str | None = None
    target: str | None = None
    step_x: str | int = "first"
    step_y: str | int = "final"
    title: str | None = None

    @property
    def family(self) -> str:
        return KIND_FAMILY[self.kind]

    @property
    def block(self) -> str:
        """The block id of the aggregated table holding this panel's rows (plan.block_id)."""
        if self.kind == "dynamics":
            x = self.x
            return f"{self.dataset}/{x.architecture}/{x.objective}/{format_hparam(x.hparam)}"
        if self.kind == "models":
            return f"{self.dataset}/{self.x.slug}_vs_{self.y.slug}"
        if self.kind == "classifier":
            return self.dataset
        return f"{self.source}_to_{self.target}"

    @property
    def table(self) -> str:
        return f"results/tables/similarity/{self.family}/{self.block}.parquet"

    def select(self, table: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
        """This panel's rows of an aggregated table (all seed pairs; for ``dynamics`` same-seed
        pairs at the requested steps). EmptySelection when there are none."""
        metric = metric or self.metric
        t = table[(table["family"] == self.family) & (table["metric"] == metric)]
        if self.kind in ("dynamics", "models", "classifier"):
            t = t[(t["dataset_x"] == self.dataset) & (t["eval_dataset_x"] == self.dataset)]
        if self.kind in ("dynamics", "models"):
            t = t[_is_model(t, "x", self.x) & _is_model(t, "y", self.y)]
        if self.kind == "dynamics":
            t = _steps(t[t["seed_x"] == t["seed_y"]], self.step_x, self.step_y)
        if self.kind in ("cross_domain", "retrained_latents"):
            source = "source_dataset_x" if self.kind == "retrained_latents" else "dataset_x"
            t = t[(t[source] == self.source) & (t["dataset_y"] == self.target)
                  & (t["eval_dataset_x"] == self.target) & (t["eval_dataset_y"] == self.target)]
        if t.empty:
            raise EmptySelection(f"no rows for panel {self.describe()} (metric {metric!r})")
        return t

    def describe(self) -> str:
        if self.kind in ("cross_domain", "retrained_latents"):
            return f"{self.kind} {self.source} -> {self.target}"
        if self.kind == "classifier":
            return f"classifier vs vanilla VAE on {self.dataset}"
        if self.kind == "dynamics":
            return f"dynamics of {self.x.label} on {self.dataset}"
        return f"{self.x.label} vs {self.y.label} on {self.dataset}"


def _is_model(t: pd.DataFrame, side: str, model: Model) -> pd.Series:
    return ((t[f"architecture_{side}"] == model.architecture) & (t[f"objective_{side}"] == model.objective)
            & (t[f"hparam_{side}"] == model.hparam))


def _steps(t: pd.DataFrame, step_x, step_y) -> pd.DataFrame:
    if t.empty:
        return t
    final = int(t["step_y"].max()) if step_y == "final" else int(step_y)
    t = t[t["step_y"] == final]
    if step_x == "all" or t.empty:
        return t
    first = int(t["step_x"].min()) if step_x == "first" else int(step_x)
    return t[t["step_x"] == first]


# ----------------------------------------------------------------------------- parsing


def _model(value: Any, where: str) -> Model:
    if not isinstance(value, Mapping) or not {"objective", "hparam"} <= set(value):
        raise ConfigError(f"{where}: expected {{objective, hparam[, architecture]}}, got {value!r}")
    if extra := set(value) - {"architecture", "objective", "hparam"}:
        raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}")
    return Model(value.get("architecture", "conv"), str(value["objective"]), float(value["hparam"]))


def parse_panel(raw: Mapping[str, Any], kind: str, where: str) -> Panel:
    """One panel from its config keys (`where` names it in errors: ``figures.fig4.panels[1]``)."""
    kind = raw.get("kind", kind)
    if kind not in KIND_FAMILY:
        raise ConfigError(f"{where}.kind: {kind!r} is not one of {sorted(KIND_FAMILY)}")
    allowed = PANEL_KEYS[kind] | SHARED_KEYS
    if extra := set(raw) - allowed:
        raise ConfigError(f"{where}: key(s) {sorted(extra)} do not apply to a {kind} panel "
                          f"(allowed: {sorted(allowed)})")
    required = {"dynamics": {"dataset", "objective", "hparam"}, "models": {"dataset", "x", "y"},
                "cross_domain": {"source", "target"}, "retrained_latents": {"source", "target"},
                "classifier": {"dataset"}}[kind]
    if missing := required - set(raw):
        raise ConfigError(f"{where}: missing key(s) {sorted(missing)} for a {kind} panel")
    common = {"kind": kind, "metric": raw.get("metric", "cka"), "title": raw.get("title")}
    if kind == "dynamics":
        model = _model({k: raw[k] for k in ("architecture", "objective", "hparam") if k in raw}, where)
        return Panel(**common, dataset=raw["dataset"], x=model, y=model,
                     step_x=raw.get("step_x", "first"), step_y=raw.get("step_y", "final"))
    if kind == "models":
        return Panel(**common, dataset=raw["dataset"], x=_model(raw["x"], f"{where}.x"),
                     y=_model(raw["y"], f"{where}.y"))
    if kind == "classifier":
        return Panel(**common, dataset=raw["dataset"], x=Model(*VANILLA), y=Model(*CLASSIFIER))
    return Panel(**common, source=raw["source"], target=raw["target"])


def figure_panels(name: str, spec: Mapping[str, Any]) -> list[Panel]:
    """The panels of heatmap figure `name` (a key of :data:`FIGURE_KINDS`)."""
    if name not in FIGURE_KINDS:
        raise ConfigError(f"figures.{name}: not a heatmap figure (known: {sorted(FIGURE_KINDS)})")
    shared = {k: v for k, v in spec.items() if k in SHARED_KEYS}
    if "panels" in spec:
        if extra := set(spec) - SHARED_KEYS - FIGURE_KEYS:
            raise ConfigError(f"figures.{name}: key(s) {sorted(extra)} belong inside `panels`")
        raws = [{**shared, **p} for p in spec["panels"]]
        wheres = [f"figures.{name}.panels[{i}]" for i in range(len(raws))]
    else:
        raws = [{k: v for k, v in spec.items() if k not in FIGURE_KEYS}]
        wheres = [f"figures.{name}"]
    if not raws:
        raise ConfigError(f"figures.{name}.panels: empty")
    return [parse_panel(raw, FIGURE_KINDS[name], where) for raw, where in zip(raws, wheres)]


def heatmap_figures(config: Mapping[str, Any]) -> dict[str, list[Panel]]:
    """{figure name: panels} of every configured heatmap figure."""
    return {name: figure_panels(name, spec) for name, spec in config.get("figures", {}).items()
            if name in FIGURE_KINDS}


def model_pairs(config: Mapping[str, Any]) -> list[tuple[str, Model, Model]]:
    """(dataset, x, y) of every ``models`` panel of every figure, in config order, each once: the
    comparisons of the ``model_pairs`` family."""
    found = [(p.dataset, p.x, p.y) for panels in heatmap_figures(config).values() for p in panels
             if p.kind == "models"]
    return list(dict.fromkeys(found))


def check_figures(config: Mapping[str, Any]) -> None:
    """Every heatmap panel's family is scored and its rows will exist (ConfigError naming the
    figure and the missing piece otherwise). Needs a schema-validated config."""
    from vaetransfer import plan

    for name, spec in config.get("figures", {}).items():
        if name not in FIGURE_KINDS and name not in OTHER_FIGURES:
            raise ConfigError(f"figures.{name}: unknown figure; known: "
                              f"{sorted([*FIGURE_KINDS, *OTHER_FIGURES])}")
        if name in OTHER_FIGURES:
            _check_other(config, name, spec)
    families = set(plan.families(config))
    trained = {(r.dataset, r.architecture, r.objective, r.hparam) for r in plan.runs(config)}
    metrics = set(config["similarity"]["metrics"])
    for name, panels in heatmap_figures(config).items():
        for i, panel in enumerate(panels):
            where = f"figures.{name}" + (f".panels[{i}]" if "panels" in config["figures"][name] else "")
            if panel.family not in families:
                raise ConfigError(f"{where}: a {panel.kind} panel needs family {panel.family!r} in "
                                  f"similarity.families")
            if panel.metric not in metrics:
                raise ConfigError(f"{where}.metric: {panel.metric!r} is not in similarity.metrics")
            for side, model in (("x", panel.x), ("y", panel.y)):
                if panel.kind in ("dynamics", "models", "classifier") and (
                        (panel.dataset, model.architecture, model.objective, model.hparam) not in trained):
                    raise ConfigError(f"{where}: {model.architecture}/{model.objective}/"
                                      f"{format_hparam(model.hparam)} ({side}) is not trained on "
                                      f"{panel.dataset!r} (training.sweeps)")
            pair = {"source": panel.source, "target": panel.target}
            if panel.kind == "cross_domain" and pair not in config["similarity"].get("transfer_pairs", []):
                raise ConfigError(f"{where}: {panel.source} -> {panel.target} is not in "
                                  "similarity.transfer_pairs")
            if panel.kind == "retrained_latents" and pair not in config.get("transfer", {}).get("pairs", []):
                raise ConfigError(f"{where}: {panel.source} -> {panel.target} is not in transfer.pairs")
            if panel.kind == "dynamics":
                steps = plan.checkpoint_steps(config, panel.dataset)
                for key, value in (("step_x", panel.step_x), ("step_y", panel.step_y)):
                    if isinstance(value, int) and value not in steps:
                        raise ConfigError(f"{where}.{key}: {value} is not a checkpoint of "
                                          f"{panel.dataset!r} ({steps})")


def logs_term(architecture: str, objective: str, term: str) -> bool:
    """Whether a run's loss log has column ``term`` (vaetransfer.losslog; classifier columns per
    vaetransfer.classify.classifier_columns, whose factors are known only once the data exists)."""
    from vaetransfer.objectives import logged_terms

    if architecture == CLASSIFIER[0]:
        return term == "loss" or re.fullmatch(r"(ce|accuracy)_\w+", term) is not None
    return term in logged_terms(objective) or re.fullmatch(r"kl_\d+", term) is not None


def _check_other(config: Mapping[str, Any], name: str, spec: Mapping[str, Any]) -> None:
    from vaetransfer import plan

    allowed = {"appJ": {"datasets", "term"}, "fig7": {"source", "target"}, "fig8": {"source", "target"}}.get(
        name, {"source", "target", "seed"})
    if extra := set(spec) - allowed:
        raise ConfigError(f"figures.{name}: key(s) {sorted(extra)} do not apply (allowed: {sorted(allowed)})")
    runs = plan.runs(config)
    if name == "appJ":
        for ds in spec.get("datasets", []):
            if ds not in {r.dataset for r in runs}:
                raise ConfigError(f"figures.appJ.datasets: no run is trained on {ds!r}")
        drawn = [r for r in runs if r.dataset in spec.get("datasets", {r.dataset})]
        term = spec.get("term", "loss")
        if not any(logs_term(r.architecture, r.objective, term) for r in drawn):
            raise ConfigError(
                f"figures.appJ.term: no drawn run logs {term!r} (a VAE logs loss, reconstruction, kl, "
                f"elbo, kl_<i> and its objective's extras; a classifier loss, ce_<factor>, accuracy_<factor>)")
        return
    if missing := {"source", "target"} - set(spec):
        raise ConfigError(f"figures.{name}: missing key(s) {sorted(missing)}")
    pair = {"source": spec["source"], "target": spec["target"]}
    vanilla = {r.dataset for r in runs if (r.architecture, r.objective, r.hparam) == VANILLA}
    if name in ("fig6", "appB"):
        transfer = config.get("transfer", {})
        if pair not in transfer.get("pairs", []):
            raise ConfigError(f"figures.{name}: {pair['source']} -> {pair['target']} is not in transfer.pairs")
        if "unfreezing" not in transfer:
            raise ConfigError(f"figures.{name}: needs transfer.unfreezing")
        if "seed" in spec and spec["seed"] not in transfer["seeds"]:
            raise ConfigError(f"figures.{name}.seed: {spec['seed']} is not in transfer.seeds")
    for ds in pair.values():
        if ds not in vanilla:
            raise ConfigError(f"figures.{name}: no vanilla VAE (conv beta_vae 1) is trained on {ds!r}")


def pair_figure(config: Mapping[str, Any], name: str) -> tuple[str, str, int]:
    """(source, target, seed) of a configured pair figure (fig6, appB, fig7, fig8)."""
    spec = config["figures"][name]
    seeds = config.get("transfer", {}).get("seeds") or config["training"]["seeds"]
    return spec["source"], spec["target"], int(spec.get("seed", seeds[0]))
