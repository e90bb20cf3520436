# Pairwise CKA / Procrustes scoring in shards of snapshot pairs, then one long-format table.


rule score_shard:
    input:
        get_shard_activations,
    output:
        "results/similarity/{family}/shard{shard}.parquet",
    log:
        "results/logs/score_shard/{family}/shard{shard}.log",
    conda:
        "../../envs/vaetransfer.yaml"
    threads: 2
    # A shard keeps every one of its snapshots prepared in memory: per snapshot about 20 float64
    # n x n matrices (16 CKA Grams, the Procrustes factors of the 4 layers wider than n) plus
    # ~0.6 MB per example (float32 activations, narrow factors): 7 GB at n = 5,000, so a
    # 6-snapshot shard asks for 44 GB. Memory and time grow with each retry.
    resources:
        mem_mb=lambda wildcards, attempt: attempt
        * (
            2000
            + len(get_shard_activations(wildcards))
            * (
                160 * config["similarity"]["n_examples"] ** 2
                + 600_000 * config["similarity"]["n_examples"]
            )
            // 10**6
        ),
        runtime=lambda wildcards, attempt: 12 * 60 * attempt,
    params:
        pairs=get_shard_pairs,
        metrics=config["similarity"]["metrics"],
    script:
        "../scripts/score_shard.py"


rule aggregate_similarity:
    input:
        plan.shard_paths(config),
    output:
        "results/tables/similarity.parquet",
    log:
        "results/logs/aggregate_similarity.log",
    conda:
        "../../envs/vaetransfer.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    script:
        "../scripts/aggregate_similarity.py"
