"""The report checker of tests/report_browser.py, on a tiny report that real Snakemake builds here.

A throwaway two-rule workflow writes a PNG (matplotlib) and an HTML table, both marked
``report(..., caption=..., category=...)``; ``snakemake --report`` turns them into the same
single-file React report as the real workflow's, which headless Chromium then opens.  Skipped
where chromium, chromedriver (Debian: ``chromium chromium-driver``) or selenium are missing."""

import base64
import os
import re
import subprocess
import textwrap

import pytest

from .conftest import SNAKEMAKE
from .report_browser import check_report, chromium_available

pytestmark = pytest.mark.skipif(
    not chromium_available(),
    reason="needs chromium and chromedriver on PATH (apt: chromium chromium-driver) and selenium")

PLOT = "results/plot.png"
TABLE = "results/table.html"

SNAKEFILE = textwrap.dedent('''
    rule all:
        input: "results/plot.png", "results/table.html"

    rule plot:
        output: report("results/plot.png", caption="plot.rst", category="Figures")
        run:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=(2, 2), dpi=40)
            ax.plot([0, 1], [0, 1])
            fig.savefig(output[0])

    rule table:
        output: report("results/table.html", caption="table.rst", category="Tables")
        run:
            with open(output[0], "w") as f:
                f.write('<!DOCTYPE html><html><body><table id="t"><tr><th>x</th></tr>'
                        '<tr><td>1</td></tr></table><a href="#t">back to the table</a></body></html>')
''')


def _snakemake(cwd, *args):
    proc = subprocess.run([*SNAKEMAKE, "--snakefile", str(cwd / "Snakefile"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    wd = tmp_path_factory.mktemp("tiny_report")
    (wd / "Snakefile").write_text(SNAKEFILE)
    (wd / "plot.rst").write_text("A **diagonal** line drawn by matplotlib.\n")
    (wd / "table.rst").write_text("A one-cell table.\n")
    _snakemake(wd, "--cores", "1")
    _snakemake(wd, "--report", "report.html")
    return wd / "report.html"


def test_tiny_report_renders_every_result_with_its_caption(tiny_report):
    check = check_report(tiny_report, timeout=60)
    assert check.problems() == [], check.summary()
    assert set(check.results) == {PLOT, TABLE}
    assert check.categories == {"Figures": {"Other": [PLOT]}, "Tables": {"Other": [TABLE]}}
    for path, result in check.results.items():
        assert result.loads, (path, result.problems)
        assert result.has_caption and result.caption_rendered, path
        assert result.reached_via_ui and result.displayed, path
    assert check.results[PLOT].caption == "A diagonal line drawn by matplotlib."
    assert check.results[PLOT].size == (80, 80)
    assert check.broken_links == [] and check.console_errors == []
    # The walk really went through the app: menu, both categories, info panels, the HTML's iframe.
    assert f"result info of {PLOT}" in check.views
    assert f"result {TABLE} (embedded HTML)" in check.views


@pytest.mark.parametrize("garbage", [
    base64.b64encode(b"not a png at all " * 20).decode(),  # decodes, but to no image
    "!!!this*is*not*base64!!!",                             # does not even decode
], ids=["not-an-image", "not-base64"])
def test_a_corrupted_image_is_reported_as_not_loading(tiny_report, tmp_path, garbage):
    html = tiny_report.read_text()
    pattern = re.compile(r'("data_uri": "data:image/png;[^",]*;base64,)[^"]+')
    assert len(pattern.findall(html)) == 1
    broken = tmp_path / "report.html"
    broken.write_text(pattern.sub(lambda m: m.group(1) + garbage, html))

    check = check_report(broken, timeout=60)
    assert not check.results[PLOT].loads
    assert check.results[TABLE].loads, check.results[TABLE].problems
    assert check.not_loading == [PLOT]
    problems = check.problems()
    assert any(p.startswith(f"result {PLOT}: image does not load") for p in problems), problems
    # The <img> the app renders for it is a broken link too, named by the view it is in.
    assert any(link.tag == "img" and PLOT in link.where for link in check.broken_links), check.broken_links
    assert not check.ok
