"""The README gallery: small copies of the embedded default's main figures.

``vaetransfer gallery`` (after ``snakemake --profile profiles/local``) rewrites
``workflow/report/gallery/<name>.png`` from ``results/figures/<name>.png``, scaled to a fixed
width, so a visitor sees what the workflow produces before running it.
"""

from __future__ import annotations

from pathlib import Path

#: (file stem, one-line description) of each gallery image, in README order.
GALLERY = (
    ("fig2", "Fig. 2: learning dynamics, first vs final checkpoint"),
    ("fig4", "Fig. 4: encoders across objectives"),
    ("fig5a", "Fig. 5a: source- vs target-trained VAE on target data"),
    ("fig6a", "Fig. 6a: progressive decoder unfreezing"),
    ("fig8", "Fig. 8: target examples through the source VAE"),
    ("appJ", "App. J: convergence curves"),
)
WIDTH = 420


def thumbnail(source: Path, out: Path, width: int = WIDTH) -> tuple[int, int]:
    """Write `source` (a PNG) scaled to `width` pixels wide as an optimised 8-bit-palette PNG;
    returns its (width, height). Atomic: a failed write leaves the old file."""
    from PIL import Image

    from vaetransfer.io import atomic_path

    with Image.open(source) as image:
        image = image.convert("RGB")
        height = round(image.height * width / image.width)
        small = image.resize((width, height), Image.LANCZOS).quantize(colors=128)
        with atomic_path(out) as tmp:
            small.save(tmp, format="PNG", optimize=True)
    return width, height


def build(results: Path, out: Path, width: int = WIDTH) -> list[Path]:
    """Thumbnails of every :data:`GALLERY` figure found in `results`/figures; FileNotFoundError
    naming the missing ones (run the workflow first), before anything is written."""
    sources = [Path(results) / "figures" / f"{name}.png" for name, _ in GALLERY]
    if missing := [str(p) for p in sources if not p.is_file()]:
        raise FileNotFoundError(f"missing figure(s) {', '.join(missing)}: run "
                                "`snakemake --profile profiles/local` first")
    written = []
    for (name, _), source in zip(GALLERY, sources):
        thumbnail(source, Path(out) / f"{name}.png", width)
        written.append(Path(out) / f"{name}.png")
    return written
