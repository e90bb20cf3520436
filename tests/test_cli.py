"""The `vaetransfer compare` console command, run as users run it (a subprocess)."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vaetransfer.activations import save_activations
from vaetransfer.layers import LAYER_NAMES
from vaetransfer.similarity import pairwise, zero_small

N = 12
META = {
    "model": {"dataset": "dsprites", "objective": "beta_vae", "hparam_name": "beta",
              "hparam": 1.0, "seed": 0, "step": 100},
    "eval_dataset": "symsol",
}
PRECISE = ["--float-format", ".17g"]  # round-trips float64 exactly


def vaetransfer(*args, cwd=None):
    """Run ``python -m vaetransfer.cli`` (the code behind the console script)."""
    return subprocess.run([sys.executable, "-m", "vaetransfer.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def parse_output(stdout):
    """``[(header, DataFrame, has_nan_note)]``, one per printed metric block."""
    blocks = []
    for block in stdout.strip().split("\n\n"):
        header, columns, *rows = block.splitlines()
        note = bool(rows) and rows[-1].startswith("constant representations")
        rows = rows[:-1] if note else rows
        index = [row.split()[0] for row in rows]
        values = [[float(v) for v in row.split()[1:]] for row in rows]
        blocks.append((header, pd.DataFrame(values, index=index, columns=columns.split()), note))
    return blocks


def expected(arrays_x, arrays_y, metric, **kwargs):
    """``pairwise`` as the CLI calls it: float32 unless every input is float64, tiny values zeroed,
    the defined score (0, or 1 between two) for constant representations."""
    arrays = [*arrays_x.values(), *arrays_y.values()]
    dtype = np.float64 if all(np.asarray(a).dtype == np.float64 for a in arrays) else np.float32
    # np.array copies: zero_small may work in place, and the fixtures are reused
    reps_x = [zero_small(np.array(a, dtype=dtype).reshape(len(a), -1)) for a in arrays_x.values()]
    reps_y = [zero_small(np.array(a, dtype=dtype).reshape(len(a), -1)) for a in arrays_y.values()]
    return pairwise(reps_x, reps_y, metric, **kwargs)


def workflow_arrays(seed, constant=()):
    rng = np.random.default_rng(seed)
    widths = {name: 3 + i % 5 for i, name in enumerate(LAYER_NAMES)}
    arrays = {name: rng.normal(size=(N, widths[name])).astype(np.float32) for name in LAYER_NAMES}
    for name in constant:
        arrays[name][:] = 0.5
    return arrays


@pytest.fixture
def files(tmp_path):
    """Two workflow dumps of the same examples (one with a collapsed log_var) and one plain npz."""
    a, b = workflow_arrays(0, constant=("log_var",)), workflow_arrays(1)
    indices = np.arange(100, 100 + N)
    save_activations(tmp_path / "a.npz", a, {**META, "example_indices": indices})
    save_activations(tmp_path / "b.npz", b, {**META, "example_indices": indices})
    rng = np.random.default_rng(2)
    plain = {"conv1": rng.normal(size=(N, 4, 3, 2)), "z": rng.normal(size=(N, 5)),
             "logits": rng.normal(size=(N,)).astype(np.float32),
             "dead": rng.normal(size=(N, 3)) * 1e-9}  # varying, but zeroed (|x| < 1e-7) before scoring
    np.savez(tmp_path / "plain.npz", **plain)
    return {"a": (tmp_path / "a.npz", a), "b": (tmp_path / "b.npz", b), "plain": (tmp_path / "plain.npz", plain)}


def test_workflow_files_match_pairwise_for_each_metric(files):
    (path_a, a), (path_b, b) = files["a"], files["b"]
    proc = vaetransfer("compare", path_a, path_b, "--metric", "cka", "--metric", "procrustes", *PRECISE)
    assert proc.returncode == 0, proc.stderr
    blocks = parse_output(proc.stdout)
    assert [header.split()[0] for header, _, _ in blocks] == ["cka", "procrustes"]
    for (header, table, note), metric in zip(blocks, ["cka", "procrustes"]):
        assert f"n = {N} examples" in header and str(path_a) in header and str(path_b) in header
        assert list(table.index) == list(LAYER_NAMES) and list(table.columns) == list(LAYER_NAMES)
        np.testing.assert_array_equal(table.to_numpy(), expected(a, b, metric), err_msg=metric)
        assert note  # a's log_var is constant
        assert (table.loc["log_var"] == 0).all() and (table.drop(index="log_var").to_numpy() > 0).all()


def test_identical_files_give_one_on_the_diagonal(files):
    path_a, _ = files["a"]
    proc = vaetransfer("compare", path_a, path_a, "--metric", "cka,procrustes", *PRECISE)
    assert proc.returncode == 0, proc.stderr
    for _, table, _ in parse_output(proc.stdout):
        diagonal = pd.Series(np.diag(table.to_numpy()), index=table.index).drop("log_var")
        np.testing.assert_allclose(diagonal, 1.0, rtol=0, atol=1e-12)
        assert table.at["log_var", "log_var"] == 1.0  # two constant representations


def test_plain_npz_against_workflow_subset_in_file_order(files):
    (path_p, plain), (path_b, b) = files["plain"], files["b"]
    proc = vaetransfer("compare", path_p, path_b, "--layers-y", "d/1,mean,input", *PRECISE)
    assert proc.returncode == 0, proc.stderr
    ((header, table, note),) = parse_output(proc.stdout)
    assert header.startswith("cka") and note
    assert list(table.index) == ["conv1", "z", "logits", "dead"]
    assert (table.loc["dead"] == 0).all() and not table.isna().any().any()
    assert list(table.columns) == ["input", "mean", "d/1"]  # LAYER_NAMES order, not the option's
    subset = {name: b[name] for name in ["input", "mean", "d/1"]}
    np.testing.assert_array_equal(table.to_numpy(), expected(plain, subset, "cka"))


def test_float64_plain_files_debiased(tmp_path):
    rng = np.random.default_rng(3)
    x = {"h1": rng.normal(size=(N, 6)), "h2": rng.normal(size=(N, 2, 2))}
    y = {"k": x["h1"] @ rng.normal(size=(6, 6)) + 0.1 * rng.normal(size=(N, 6)), "h2": x["h2"]}
    np.savez(tmp_path / "x.npz", **x)
    np.savez(tmp_path / "y.npz", **y)
    proc = vaetransfer("compare", tmp_path / "x.npz", tmp_path / "y.npz", "--debiased", "--float-format", "%.17g")
    assert proc.returncode == 0, proc.stderr
    ((header, table, note),) = parse_output(proc.stdout)
    assert "debiased" in header and not note
    np.testing.assert_array_equal(table.to_numpy(), expected(x, y, "cka", debiased=True))
    assert table.at["h2", "h2"] == pytest.approx(1.0, abs=1e-12)


def test_parquet_has_one_row_per_pair_and_metric(files, tmp_path):
    (path_a, a), (path_p, plain) = files["a"], files["plain"]
    out = tmp_path / "nested" / "table.parquet"
    proc = vaetransfer("compare", path_a, path_p, "--metric", "procrustes,cka",
                       "--layers-x", "log_var,input,e/3", "--out", out)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(out)
    assert list(table.columns) == ["layer_x", "layer_y", "metric", "score", "n_examples", "file_x", "file_y"]
    assert len(table) == 3 * 4 * 2
    assert not table.duplicated(["layer_x", "layer_y", "metric"]).any()
    assert list(dict.fromkeys(table.layer_x)) == ["input", "e/3", "log_var"]
    assert list(dict.fromkeys(table.layer_y)) == ["conv1", "z", "logits", "dead"]
    assert (table.n_examples == N).all() and (table.file_x == str(path_a)).all() and (table.file_y == str(path_p)).all()
    subset = {name: a[name] for name in ["input", "e/3", "log_var"]}
    for metric in ["cka", "procrustes"]:
        got = table[table.metric == metric].pivot(index="layer_x", columns="layer_y", values="score")
        got = got.loc[list(subset), list(plain)].to_numpy()
        np.testing.assert_array_equal(got, expected(subset, plain, metric), err_msg=metric)
    collapsed = table[table.layer_x == "log_var"].set_index("layer_y").score
    assert (collapsed.drop("dead") == 0).all() and (collapsed.loc["dead"] == 1).all()  # both constant
    assert not list(out.parent.glob(".*tmp*"))  # written atomically: no temporary left


def test_installed_console_script(files):
    """`pip install -e .` puts a `vaetransfer` command next to the interpreter."""
    script = shutil.which("vaetransfer", path=str(Path(sys.executable).parent))
    assert script, f"no vaetransfer script in {Path(sys.executable).parent}: reinstall with pip install -e ."
    (path_a, a), (path_b, b) = files["a"], files["b"]
    proc = subprocess.run([script, "compare", path_a, path_b, "--layers-x", "e/1", "--layers-y", "e/1,e/2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ((_, table, _),) = parse_output(proc.stdout)
    want = expected({"e/1": a["e/1"]}, {"e/1": b["e/1"], "e/2": b["e/2"]}, "cka")
    np.testing.assert_allclose(table.to_numpy(), want, rtol=0, atol=5e-5)  # printed with .4f
    help_text = subprocess.run([script, "compare", "--help"], capture_output=True, text=True).stdout
    assert "--metric" in help_text and "--layers-x" in help_text


def assert_usage_error(proc, *culprits):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaetransfer compare: error: "), proc.stderr
    for culprit in culprits:
        assert str(culprit) in lines[0], (culprit, lines[0])
    assert proc.stdout == ""


def test_missing_file(files, tmp_path):
    missing = tmp_path / "nope.npz"
    assert_usage_error(vaetransfer("compare", files["a"][0], missing), missing, "no such file")


def test_unknown_layer(files):
    assert_usage_error(vaetransfer("compare", files["a"][0], files["b"][0], "--layers-y", "mean,e/9"),
                       files["b"][0], "'e/9'")
    assert_usage_error(vaetransfer("compare", files["plain"][0], files["b"][0], "--layers-x", "fc"),
                       files["plain"][0], "'fc'")


def test_not_an_npz(files, tmp_path):
    npy, text = tmp_path / "acts.npy", tmp_path / "acts.txt"
    np.save(npy, np.zeros((N, 3)))
    text.write_text("not activations\n")
    for bad in (npy, text):
        assert_usage_error(vaetransfer("compare", bad, files["a"][0]), bad, "not an .npz")


def test_different_example_counts(files, tmp_path):
    short = tmp_path / "short.npz"
    np.savez(short, z=np.random.default_rng(0).normal(size=(N - 2, 4)))
    assert_usage_error(vaetransfer("compare", files["a"][0], short), files["a"][0], short, str(N), str(N - 2))


def test_different_example_indices(files, tmp_path):
    path_a, a = files["a"]
    other = tmp_path / "other.npz"
    save_activations(other, a, {**META, "example_indices": np.arange(N)})
    assert_usage_error(vaetransfer("compare", path_a, other), path_a, other, "example_indices")


def test_bad_options(files):
    path_a, _ = files["a"]
    assert_usage_error(vaetransfer("compare", path_a, path_a, "--metric", "cosine"), "cosine")
    assert_usage_error(vaetransfer("compare", path_a, path_a, "--metric", "procrustes", "--debiased"), "--debiased")
    assert_usage_error(vaetransfer("compare", path_a, path_a, "--device", "gpu0"), "gpu0")
    proc = vaetransfer("compare", path_a)  # argparse's own error: usage + message, code 2
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "B.npz" in proc.stderr


def test_constant_nan_reproduces_the_authors_code(files):
    (path_a, a), (path_b, b) = files["a"], files["b"]
    proc = vaetransfer("compare", path_a, path_b, "--constant", "nan", *PRECISE)
    assert proc.returncode == 0, proc.stderr
    ((header, table, note),) = parse_output(proc.stdout)
    assert note and "log_var (A)" in proc.stdout and "NaN" in proc.stdout
    assert table.loc["log_var"].isna().all() and not table.drop(index="log_var").isna().any().any()
    np.testing.assert_array_equal(table.to_numpy(), expected(a, b, "cka", constant="nan"))


def test_gallery_scales_every_listed_figure_and_names_missing_ones(tmp_path, capsys):
    """`vaetransfer gallery` writes one small PNG per gallery figure; a missing figure is a usage
    error naming it, and nothing is written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from vaetransfer.cli import main
    from vaetransfer.gallery import GALLERY

    figures = tmp_path / "results/figures"
    figures.mkdir(parents=True)
    out = tmp_path / "gallery"
    for name, _ in GALLERY[:-1]:
        fig, ax = plt.subplots(figsize=(8, 6))
        ax.imshow(np.random.default_rng(0).random((20, 20)))
        fig.savefig(figures / f"{name}.png", dpi=150)
        plt.close(fig)
    assert main(["gallery", "--results", str(tmp_path / "results"), "--out", str(out)]) == 2
    assert f"{GALLERY[-1][0]}.png" in capsys.readouterr().err and not out.exists()
    (figures / f"{GALLERY[-1][0]}.png").write_bytes((figures / f"{GALLERY[0][0]}.png").read_bytes())
    assert main(["gallery", "--results", str(tmp_path / "results"), "--out", str(out), "--width", "300"]) == 0
    for name, _ in GALLERY:
        with Image.open(out / f"{name}.png") as image:
            assert image.size == (300, 225)
        assert (out / f"{name}.png").stat().st_size < (figures / f"{name}.png").stat().st_size
