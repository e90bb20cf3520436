"""The README opens with the two commands users run, and CI runs the second one."""

import re

from .conftest import REPO


def opening_commands():
    blocks = re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), flags=re.S)
    return blocks[0].strip(), blocks[1].strip()


def test_first_command_runs_the_embedded_default():
    run, _ = opening_commands()
    assert run.startswith("python3 -m venv .venv") and run.endswith("snakemake --profile profiles/local")


def test_ci_runs_the_readme_test_command():
    _, test = opening_commands()
    assert "pytest" in test
    ci = [line for line in (REPO / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == test


def test_readme_gallery_shows_every_gallery_figure_and_each_image_exists():
    """The README's images are the committed gallery (`vaetransfer gallery` rewrites them)."""
    import re

    from vaetransfer.gallery import GALLERY

    text = (REPO / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images == [f"workflow/report/gallery/{name}.png" for name, _ in GALLERY]
    for path in images:
        assert (REPO / path).read_bytes()[:4] == b"\x89PNG"
        assert (REPO / path).stat().st_size < 200_000
