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
    resources:
        mem_mb=16000,
        runtime=12 * 60,
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
        mem_mb=8000,
    script:
        "../scripts/aggregate_similarity.py"
