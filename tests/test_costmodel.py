"""Cost model and footprint: widths match the model, estimates follow the engine's arithmetic."""

import subprocess
import sys

import numpy as np
import pytest

from vaetransfer import costmodel, plan, sharding
from vaetransfer.footprint import footprint

from .conftest import REPO, load_config


@pytest.mark.parametrize("architecture", ["conv", "fc", "classifier"])
@pytest.mark.parametrize("channels", [1, 3])
def test_layer_widths_match_a_forward_pass(channels, architecture):
    from vaetransfer.activations import compute_activations
    from vaetransfer.models import build_model

    args = {"factor_sizes": [3, 4]} if architecture == "classifier" else {}
    model = build_model(architecture, channels=channels, **args)
    arrays = compute_activations(model, np.zeros((2, 64, 64, channels), np.uint8))
    measured = {name: int(np.prod(a.shape[1:])) for name, a in arrays.items()}
    assert measured == costmodel.layer_widths(channels, architecture)
    assert list(measured) == list(model.LAYERS)


def test_flop_counts_follow_the_engine():
    n = 5000
    # CKA Gram of a 32768-wide layer: 2 n^2 p with 10 row blocks -> 11/20 of a full GEMM.
    assert costmodel.prepare_flops([32768], n, ["cka"]).float32 == pytest.approx(2 * n * n * 32768 * 0.55)
    # A narrow layer needs no eigendecomposition for Procrustes; a wide one does.
    assert costmodel.prepare_flops([10], n, ["procrustes"]).float64 == 0
    assert costmodel.prepare_flops([8192], n, ["procrustes"]).float64 == pytest.approx(
        2 * n * n * 8192 * 0.55 + costmodel.EIGH_FLOPS * n**3)
    # One CKA pair is one n^2 dot product; Procrustes grows with both ranks.
    assert costmodel.pair_flops([10], [10], n, ["cka"]).float32 == 2 * n * n
    narrow = costmodel.pair_flops([10], [10], n, ["procrustes"]).float64
    wide = costmodel.pair_flops([32768], [32768], n, ["procrustes"]).float64
    assert wide > 1e5 * narrow
    assert costmodel.Flops(150e9, 75e9).seconds() == pytest.approx(2.0)


def test_prepared_and_activation_bytes():
    widths = costmodel.layer_widths(1).values()
    assert costmodel.activation_bytes(widths, 5000) == 4 * 5000 * sum(widths)
    # 16 float32 Grams at n = 5000 are 1.6 GB.
    assert costmodel.prepared_bytes(widths, 5000, ["cka"]) == 16 * 4 * 5000**2


def test_paper_shards_fit_in_8_gib():
    """Issue target: every shard job of the paper-scale config has bounded memory under 8 GiB."""
    paper = load_config(REPO / "config/config.yaml")
    for family in plan.families(paper):
        for block in sharding.shards(paper, family):
            assert sharding.shard_resources(paper, block)["mem_mb"] < 8 * 1024


def test_footprint_totals_and_temp_bound():
    paper = load_config(REPO / "config/config.yaml")
    table, totals = footprint(paper, jobs=4)
    assert set(table["eval_dataset"]) == {"dsprites", "cars3d", "smallnorb", "symsol", "celeba"}
    # At n = 5000 one conv snapshot's 16 representations take about 2 GB per evaluation dataset.
    conv = table[table["architecture"] == "conv"]
    assert conv["dump_GB"].between(1.9, 2.5).all() and len(conv) == 5
    assert (table[table["architecture"] != "conv"]["dump_GB"] < 1.1).all()
    assert totals["A_all_dumps_GB"] == pytest.approx(table["all_dumps_GB"].sum())
    assert totals["B_peak_dumps_GB"] < totals["A_all_dumps_GB"] / 10
    _, more = footprint(paper, jobs=40)
    assert more["B_peak_dumps_GB"] > totals["B_peak_dumps_GB"]


def test_footprint_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vaetransfer.cli", "footprint", "--jobs", "8"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "peak of temp() dumps with 8 jobs" in proc.stdout and "celeba" in proc.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "config/quick.yaml").read_text().replace("n_examples: 256", "n_examples: -3"))
    proc = subprocess.run([sys.executable, "-m", "vaetransfer.cli", "footprint", "--configfile", str(bad)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and str(bad) in proc.stderr and "Traceback" not in proc.stderr
