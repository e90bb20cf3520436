# Transfer experiments (Sections 4.2-4.3): partial retraining of a source-trained vanilla VAE on the
# target (one job per variant and seed, so levels run in parallel), the progressive-unfreezing
# losses and grids (Fig. 6, Appendix B) and the cross-domain reconstructions (Figs. 7, 8).


rule train_transfer:
    input:
        unpack(get_transfer_inputs),
    output:
        checkpoints=directory(
            "results/transfer/{source}_to_{target}/{variant}/seed{seed}/checkpoints"
        ),
        losses="results/transfer/{source}_to_{target}/{variant}/seed{seed}/losses.parquet",
    log:
        "results/logs/train_transfer/{source}_to_{target}/{variant}/seed{seed}.log",
    conda:
        "../../envs/vaetransfer.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 24 * 60 * attempt,
    params:
        run=get_transfer_params,
    script:
        "../scripts/train_transfer.py"


rule unfreezing:
    input:
        unpack(get_unfreezing_inputs),
    output:
        table="results/tables/unfreezing/{source}_to_{target}/seed{seed}.parquet",
        figures=directory("results/figures/unfreezing/{source}_to_{target}/seed{seed}"),
    log:
        "results/logs/unfreezing/{source}_to_{target}/seed{seed}.log",
    conda:
        "../../envs/vaetransfer.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 120 * attempt,
    params:
        models=get_unfreezing_models,
        seed=lambda wildcards: int(wildcards.seed),
        n_examples=lambda wildcards: config["transfer"]["unfreezing"]["n_examples"],
        validation_fraction=config["training"]["validation_fraction"],
        device=config["training"]["device"],
    script:
        "../scripts/unfreezing.py"


rule reconstructions:
    input:
        unpack(lambda wildcards: get_dataset_files(wildcards.target)),
        source_model=lambda wildcards: plan.checkpoint_dir(
            plan.Run(wildcards.source, *plan.VANILLA, _transfer_seed())
        ),
    output:
        png="results/figures/reconstructions/{source}_to_{target}.png",
        pdf="results/figures/reconstructions/{source}_to_{target}.pdf",
    log:
        "results/logs/reconstructions/{source}_to_{target}.log",
    localrule: True
    conda:
        "../../envs/vaetransfer.yaml"
    params:
        checkpoint=lambda wildcards: _vanilla_final(wildcards.source, _transfer_seed()),
        validation_fraction=config["training"]["validation_fraction"],
    script:
        "../scripts/reconstructions.py"


rule transfer:
    input:
        get_transfer_targets(),
    localrule: True


rule transfer_report:
    input:
        # The pair's cross-domain block only: a report does not wait for the whole sweep.
        table="results/tables/similarity/cross_domain/{source}_to_{target}.parquet",
        grid="results/figures/reconstructions/{source}_to_{target}.png",
        unfreezing=lambda wildcards: f"results/tables/unfreezing/{wildcards.source}_to_{wildcards.target}/seed{config['transfer']['seeds'][0]}.parquet",
        downstream=get_report_downstream,
    output:
        html=report(
            "results/reports/{source}_to_{target}.html",
            caption="../report/transfer_report.rst",
            category="5. Transferability reports (which parts to retrain)",
            subcategory="{source} -> {target}",
        ),
        summary="results/reports/{source}_to_{target}.json",
    log:
        "results/logs/transfer_report/{source}_to_{target}.log",
    localrule: True
    conda:
        "../../envs/vaetransfer.yaml"
    script:
        "../scripts/transfer_report.py"
