# Datasets: each stored once as images.npy (uint8 N x 64 x 64 x C), factors.parquet, meta.json,
# plus a fixed, seeded evaluation sample for the similarity stage.


rule download:
    """One original file of a real dataset, fetched, resumed and verified (vaetransfer.data.download).
    A file placed here by hand is used as it is: the rule has no input, so it never reruns.
    """
    output:
        "resources/downloads/{dataset}/{filename}",
    log:
        "results/logs/download/{dataset}/{filename}.log",
    wildcard_constraints:
        dataset=DOWNLOAD_DATASET_PATTERN,
        filename=DOWNLOAD_FILENAME_PATTERN,
    # The script retries broken connections itself (resuming); this covers what outlasts that.
    retries: 1
    # On the submit host: compute nodes often have no internet.
    localrule: True
    conda:
        "../../envs/vaetransfer.yaml"
    script:
        "../scripts/download.py"


rule prepare_dataset:
    input:
        # Real datasets: their verified original files; procedural ones: nothing.
        get_prepare_inputs,
    output:
        images="results/data/{dataset}/images.npy",
        factors="results/data/{dataset}/factors.parquet",
        meta="results/data/{dataset}/meta.json",
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    conda:
        "../../envs/vaetransfer.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
        # Without `files` (mirror URLs): a new mirror of the same bytes rebuilds nothing.
        spec=lambda wildcards: {
            key: value
            for key, value in config["datasets"][wildcards.dataset].items()
            if key != "files"
        },
    script:
        "../scripts/prepare_dataset.py"


rule evaluation_sample:
    input:
        meta="results/data/{dataset}/meta.json",
    output:
        "results/data/{dataset}/eval_indices.npy",
    log:
        "results/logs/evaluation_sample/{dataset}.log",
    localrule: True
    conda:
        "../../envs/vaetransfer.yaml"
    params:
        n=config["similarity"]["n_examples"],
        seed=config["similarity"]["sample_seed"],
    script:
        "../scripts/evaluation_sample.py"
