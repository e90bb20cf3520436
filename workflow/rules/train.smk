# One training job per (dataset, objective, hyper-parameter, seed); checkpoints at the configured
# steps and a per-step loss log.


rule train_vae:
    input:
        unpack(get_train_data),
    output:
        checkpoints=expand(
            "results/models/{{dataset}}/{{objective}}/{{hparam}}/seed{{seed}}/step{step}.pt",
            step=STEPS,
        ),
        losses="results/models/{dataset}/{objective}/{hparam}/seed{seed}/losses.parquet",
    log:
        "results/logs/train_vae/{dataset}/{objective}/{hparam}/seed{seed}.log",
    conda:
        "../../envs/vaetransfer.yaml"
    threads: 2
    # Portable resources only: the SLURM partition and GPU model are cluster facts, set in
    # profiles/slurm. Memory and time grow with each retry (`--retries`).
    resources:
        gpu=1,
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 24 * 60 * attempt,
    params:
        training=config["training"],
    script:
        "../scripts/train_vae.py"
