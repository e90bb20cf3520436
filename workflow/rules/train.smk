# One training job per (dataset, architecture, objective, hyper-parameter, seed): the checkpoints
# of the dataset's schedule (plan.checkpoint_steps) in one directory, and a per-step loss log.


rule train_vae:
    input:
        unpack(get_train_data),
    output:
        checkpoints=directory(
            "results/models/{dataset}/{architecture}/{objective}/{hparam}/seed{seed}/checkpoints"
        ),
        losses="results/models/{dataset}/{architecture}/{objective}/{hparam}/seed{seed}/losses.parquet",
    log:
        "results/logs/train_vae/{dataset}/{architecture}/{objective}/{hparam}/seed{seed}.log",
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
        # Only what determines this run: editing another dataset's schedule or another
        # objective's options does not rerun it.
        run=get_train_params,
    script:
        "../scripts/train_vae.py"
