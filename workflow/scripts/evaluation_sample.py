"""Draw a dataset's fixed, seeded evaluation sample (the similarity stage's n examples)."""

from vaetransfer.data.store import evaluation_indices
from vaetransfer.io import read_json, save_npy
from vaetransfer.runtime import log_to


def main(meta: str, n: int, seed: int, out: str) -> None:
    n_total = read_json(meta)["n"]
    indices = evaluation_indices(n_total, n, seed)
    print(f"{len(indices)} of {n_total} examples (seed {seed})")
    save_npy(out, indices)


if "snakemake" in globals():
    with log_to(snakemake.log[0]):
        main(snakemake.input.meta, snakemake.params.n, snakemake.params.seed, snakemake.output[0])
