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
    resources:
        mem_mb=8000,
        runtime=24 * 60,
    params:
        training=config["training"],
    script:
        "../scripts/train_vae.py"
