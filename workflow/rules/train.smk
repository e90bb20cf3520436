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


# training.stack_seeds: every seed of one VAE configuration in one job (vaetransfer.stacked; one
# GPU then trains several models at once). Same outputs as train_vae, which still trains the
# classifier (not stackable).
if config["training"]["stack_seeds"]:

    ruleorder: train_stacked > train_vae

    rule train_stacked:
        input:
            unpack(get_train_data),
        output:
            checkpoints=[
                directory(path)
                for path in expand(
                    "results/models/{{dataset}}/{{architecture}}/{{objective}}/{{hparam}}/seed{seed}/checkpoints",
                    seed=SEEDS,
                )
            ],
            losses=expand(
                "results/models/{{dataset}}/{{architecture}}/{{objective}}/{{hparam}}/seed{seed}/losses.parquet",
                seed=SEEDS,
            ),
        log:
            "results/logs/train_stacked/{dataset}/{architecture}/{objective}/{hparam}.log",
        wildcard_constraints:
            architecture=_alternatives(plan.STACKABLE_ARCHITECTURES),
        conda:
            "../../envs/vaetransfer.yaml"
        threads: 2
        resources:
            gpu=1,
            mem_mb=lambda wildcards, attempt: 8000 * attempt,
            runtime=lambda wildcards, attempt: 24 * 60 * attempt,
        params:
            seeds=SEEDS,
            run=get_train_params,
        script:
            "../scripts/train_stacked.py"
