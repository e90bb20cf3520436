# Datasets: each stored once as images.npy (uint8 N x 64 x 64 x C), factors.parquet, meta.json,
# plus a fixed, seeded evaluation sample for the similarity stage.


rule prepare_dataset:
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
        spec=lambda wildcards: config["datasets"][wildcards.dataset],
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
