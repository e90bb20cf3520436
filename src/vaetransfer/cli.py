"""The ``vaetransfer`` console command: similarity tools for users' own models.

``vaetransfer compare A.npz B.npz --metric cka`` prints the layer-by-layer similarity of two
activation files, scored by the function the workflow uses (:func:`vaetransfer.similarity.pairwise`,
after :func:`vaetransfer.similarity.zero_small`). Each subcommand is one ``add_parser`` call in
:func:`build_parser` plus one ``(args) -> int`` function set as its ``handler``; a user error is
raised as :class:`UsageError` and becomes a one-line ``vaetransfer <command>: error: ...`` and exit
code 2, like argparse's own errors.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("cka", "procrustes")
NOTE = "constant representations (zero variance in every feature: collapsed): {layers}; {rule}"
RULES = {
    "defined": "they score 0 against varying ones and 1 between two constant ones (--constant nan: NaN)",
    "nan": "their scores are undefined (NaN)",
}


class UsageError(Exception):
    """A problem with the user's input: reported in one line, exit code 2."""


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaetransfer", description="Tools for comparing the representations of your own models."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compare = commands.add_parser(
        "compare",
        help="layer-by-layer similarity of two activation files",
        description="Print the similarity of every layer of A (rows) with every layer of B (columns). "
        "A file is a workflow activation dump (.npz with its .json sidecar) or a plain .npz of "
        "named (n, ...) arrays, one per layer; both must hold the same n examples.",
    )
    compare.add_argument("file_x", metavar="A.npz", type=Path, help="activations of model A (rows)")
    compare.add_argument("file_y", metavar="B.npz", type=Path, help="activations of model B (columns)")
    compare.add_argument("--metric", action="append", type=_comma_list, metavar="NAME[,NAME]",
                         help=f"similarity metric(s): {', '.join(METRICS)}; repeatable (default: cka)")
    compare.add_argument("--layers-x", type=_comma_list, metavar="L1,L2", help="only these layers of A")
    compare.add_argument("--layers-y", type=_comma_list, metavar="L1,L2", help="only these layers of B")
    compare.add_argument("--device", default="cpu", help="torch device for scoring (default: cpu)")
    compare.add_argument("--debiased", action="store_true", help="debiased CKA (CKA only)")
    compare.add_argument("--constant", choices=sorted(RULES), default="defined",
                         help="score of pairs with a constant (collapsed) representation: defined "
                         "(0, or 1 between two; the workflow's default) or nan (the authors' code)")
    compare.add_argument("--float-format", default=".4f", metavar="SPEC",
                         help="format spec of printed scores, e.g. .4f, .3e or %%.6g (default: .4f)")
    compare.add_argument("--out", type=Path, metavar="TABLE.parquet",
                         help="also write the long-format table (layer_x, layer_y, metric, score, "
                         "n_examples, file_x, file_y) as Parquet")
    compare.set_defaults(handler=compare_command)

    footprint = commands.add_parser(
        "footprint",
        help="estimated disk, memory and CPU time of a config's similarity stage",
        description="Print the activation-dump sizes, the peak disk with temp() dumps, the largest "
        "shard's memory and scratch, and the scoring job-hours of a workflow config.",
    )
    footprint.add_argument("--configfile", type=Path, default=Path("config/config.yaml"),
                           help="workflow config (default: config/config.yaml)")
    footprint.add_argument("--jobs", type=int, default=100,
                           help="jobs running at once (snakemake --jobs / --cores; default 100)")
    footprint.set_defaults(handler=footprint_command)

    gallery = commands.add_parser(
        "gallery",
        help="rewrite the README gallery from a finished run's figures",
        description="Scale the embedded default's main figures (results/figures/*.png) down into "
        "workflow/report/gallery/, the small PNGs the README shows.",
    )
    gallery.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    gallery.add_argument("--out", type=Path, default=Path("workflow/report/gallery"), help="gallery folder")
    gallery.add_argument("--width", type=int, default=420, help="width of each image in pixels")
    gallery.set_defaults(handler=gallery_command)
    return parser


def gallery_command(args: argparse.Namespace) -> int:
    from vaetransfer.gallery import build

    try:
        for path in build(args.results, args.out, args.width):
            print(f"{path} ({path.stat().st_size // 1024} KiB)")
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    return 0


def footprint_command(args: argparse.Namespace) -> int:
    from vaetransfer.footprint import report
    from vaetransfer.plan import ConfigError, load_config

    if not args.configfile.is_file():
        raise UsageError(f"{args.configfile}: no such config file")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    try:
        config = load_config(args.configfile)
    except ConfigError as exc:
        raise UsageError(f"{args.configfile}: {exc}") from None
    except Exception as exc:  # schema violations (snakemake's WorkflowError)
        raise UsageError(f"{args.configfile}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    print(report(config, args.jobs))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2


# ------------------------------------------------------------------------------------- compare


def read_layers(path: Path, wanted: list[str] | None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """``({layer: (n, ...) array} in file order, example indices or None)`` of one activation file.

    ``wanted``: the layers to read (default: all); only those are loaded.
    """
    from vaetransfer.activations import load_activations, sidecar_path
    from vaetransfer.io import read_json

    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if sidecar_path(path).is_file() and path.suffix == ".npz":  # a workflow activation dump
        try:
            stored = [entry["name"] for entry in read_json(sidecar_path(path))["layers"]]
            _check_selection(path, stored, wanted)
            arrays, meta = load_activations(path, wanted)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise UsageError(f"{path}: not a readable activation dump ({exc!r})") from None
        indices = meta.get("example_indices")
        return arrays, None if indices is None else np.asarray(indices)
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path}: not an .npz archive (numpy.savez of named (n, ...) arrays)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = [name for name in npz.files if name != "example_indices"]
            _check_selection(path, names, wanted)
            indices = npz["example_indices"] if "example_indices" in npz.files else None  # sidecar lost
            arrays = {name: npz[name] for name in names if wanted is None or name in wanted}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path}: not a readable .npz archive of arrays ({exc})") from None
    for name, array in arrays.items():
        if array.ndim == 0 or not np.issubdtype(array.dtype, np.number):
            raise UsageError(f"{path}: layer {name!r} is not an (n, ...) numeric array "
                             f"(shape {array.shape}, dtype {array.dtype})")
    return arrays, indices


def _check_selection(path: Path, stored: list[str], wanted: list[str] | None) -> None:
    if not stored or wanted == []:
        raise UsageError(f"{path}: no layers to compare")
    for name in wanted or []:
        if name not in stored:
            raise UsageError(f"{path}: no layer {name!r}; layers: {', '.join(stored)}")


def _n_examples(path: Path, arrays: dict[str, np.ndarray]) -> int:
    counts = {name: array.shape[0] for name, array in arrays.items()}
    if len(set(counts.values())) != 1:
        raise UsageError(f"{path}: layers hold different numbers of examples: {counts}")
    return next(iter(counts.values()))


def compare_command(args: argparse.Namespace) -> int:
    import torch

    from vaetransfer.io import write_parquet
    from vaetransfer.similarity import pairwise, zero_small

    metrics = list(dict.fromkeys(m for group in args.metric or [["cka"]] for m in group))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise UsageError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    if args.debiased and "cka" not in metrics:
        raise UsageError("--debiased applies to --metric cka only")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UsageError(f"bad --device {args.device!r}; e.g. cpu, cuda or cuda:1") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: torch sees no CUDA GPU")
    spec = args.float_format.removeprefix("%")  # printf style (%.4f) works too
    try:
        format(0.5, spec)
    except (ValueError, TypeError):
        raise UsageError(f"bad --float-format {args.float_format!r}; e.g. .4f or .3e") from None

    read = {}
    for key, path, wanted in (("x", args.file_x, args.layers_x), ("y", args.file_y, args.layers_y)):
        arrays, indices = read_layers(path, wanted)
        read[key] = (path, arrays, indices, _n_examples(path, arrays))
    (px, ax, ix, nx), (py, ay, iy, ny) = read["x"], read["y"]
    if nx != ny:
        raise UsageError(f"{px} holds {nx} examples but {py} holds {ny}; they must be the same examples")
    if ix is not None and iy is not None and not np.array_equal(ix, iy):
        raise UsageError(f"{px} and {py} hold different examples (their example_indices differ)")

    # One dtype for all: float64 only when every input is float64, else float32 (the workflow's).
    dtype = np.float64 if all(a.dtype == np.float64 for a in [*ax.values(), *ay.values()]) else np.float32
    reps_x = [zero_small(a.reshape(nx, -1).astype(dtype, copy=False)) for a in ax.values()]
    same = px.resolve() == py.resolve() and list(ax) == list(ay)
    reps_y = reps_x if same else [zero_small(a.reshape(ny, -1).astype(dtype, copy=False)) for a in ay.values()]
    constant = [f"{name} ({side})" for side, names, reps in (("A", ax, reps_x), ("B", ay, reps_y))
                for name, rep in zip(names, reps) if rep.size and np.all(rep == rep[:1])]
    if same:
        constant = [c for c in constant if c.endswith("(A)")]
    matrices = {}
    for metric in metrics:
        debiased = args.debiased and metric == "cka"
        try:
            scores = pairwise(reps_x, reps_y, metric, device=args.device, debiased=debiased,
                              constant=args.constant)
        except (ValueError, RuntimeError) as exc:  # NaN/inf activations, bad --device, ...
            raise UsageError(f"cannot score {px} against {py}: {exc}") from None
        matrices[metric] = matrix = pd.DataFrame(scores, index=list(ax), columns=list(ay))
        name = f"{'debiased' if debiased else 'biased'} linear CKA" if metric == "cka" else "Procrustes similarity"
        print(("\n" if len(matrices) > 1 else "") + f"{metric} ({name}), n = {nx} examples; rows: {px}, columns: {py}")
        print(matrix.to_string(float_format=lambda v: format(v, spec), na_rep="NaN"))
        if constant:
            print(NOTE.format(layers=", ".join(constant), rule=RULES[args.constant]))

    if args.out is not None:
        rows = [(lx, ly, metric, float(matrices[metric].at[lx, ly]), nx, str(px), str(py))
                for lx in ax for ly in ay for metric in metrics]
        columns = ["layer_x", "layer_y", "metric", "score", "n_examples", "file_x", "file_y"]
        try:
            write_parquet(args.out, pd.DataFrame(rows, columns=columns))
        except OSError as exc:
            raise UsageError(f"{args.out}: cannot write ({exc.strerror or exc})") from None
        print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
