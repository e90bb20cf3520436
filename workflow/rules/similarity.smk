# Pairwise CKA / Procrustes scoring in shards of snapshot pairs, then one long-format table.


rule score_shard:
    input:
        get_shard_activations,
    output:
        "results/similarity/{family}/{block}/shard{shard}.parquet",
    log:
        "results/logs/score_shard/{family}/{block}/shard{shard}.log",
    priority: SCORE_PRIORITY
    conda:
        "../../envs/vaetransfer.yaml"
    threads: 2
    # Bounded memory whatever the shard size: prepared representations beyond
    # similarity.memory_mb are spilled to the job's tmpdir (resources from the cost model).
    resources:
        mem_mb=lambda wildcards, attempt: get_shard_resources(wildcards, attempt)[
            "mem_mb"
        ],
        runtime=lambda wildcards, attempt: get_shard_resources(wildcards, attempt)[
            "runtime"
        ],
        disk_mb=lambda wildcards, attempt: get_shard_resources(wildcards, attempt)[
            "disk_mb"
        ],
    params:
        pairs=get_shard_pairs,
        similarity=config["similarity"],
    script:
        "../scripts/score_shard.py"


# One table per block (plan.block_id): what a figure panel reads, so a figure needs only the
# shards of its own blocks.
rule aggregate_block:
    input:
        get_block_shards,
    output:
        "results/tables/similarity/{family}/{block}.parquet",
    log:
        "results/logs/aggregate_block/{family}/{block}.log",
    localrule: True
    conda:
        "../../envs/vaetransfer.yaml"
    script:
        "../scripts/aggregate_similarity.py"


# Every block in one table (the transfer reports and users' own analyses read it).
rule aggregate_similarity:
    input:
        [sharding.table_path(f, b) for f, found in BLOCKS.items() for b in found],
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
