# Downstream classification (Table 1, Appendix A): the target data encoded once per encoder, one
# gradient-boosting job per label, then the two tables (Parquet and Markdown).


rule downstream_features:
    input:
        unpack(lambda wildcards: get_dataset_files(wildcards.target)),
        factors="results/data/{target}/factors.parquet",
        model=lambda wildcards: _vanilla_dir(wildcards.encoder, wildcards.seed),
    output:
        "results/downstream/{encoder}_to_{target}/seed{seed}/features.npz",
    log:
        "results/logs/downstream_features/{encoder}_to_{target}/seed{seed}.log",
    conda:
        "../../envs/vaetransfer.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    params:
        checkpoint=lambda wildcards: _vanilla_final(wildcards.encoder, wildcards.seed),
        sample=lambda wildcards: config["downstream"]["sample"],
        device=config["training"]["device"],
    script:
        "../scripts/downstream_features.py"


rule downstream_label:
    input:
        features="results/downstream/{encoder}_to_{target}/seed{seed}/features.npz",
        meta="results/data/{target}/meta.json",
        factors="results/data/{target}/factors.parquet",
    output:
        "results/downstream/{encoder}_to_{target}/seed{seed}/labels/{label}.parquet",
    log:
        "results/logs/downstream_label/{encoder}_to_{target}/seed{seed}/{label}.log",
    conda:
        "../../envs/vaetransfer.yaml"
    threads: 1
    # sklearn's gradient boosting grows one tree per class and round: hours for the 40-class
    # dSprites orientation on the full split (vaetransfer.downstream).
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 8 * 60 * attempt,
    params:
        role=lambda wildcards: (
            "target" if wildcards.encoder == wildcards.target else "source"
        ),
        n_estimators=lambda wildcards: config["downstream"]["n_estimators"],
    script:
        "../scripts/downstream_label.py"


rule downstream_tables:
    input:
        [
            f"results/downstream/{e}_to_{t}/seed{s}/labels/{label}.parquet"
            for e, t, s, label in DOWNSTREAM_JOBS
        ],
    output:
        per_label="results/tables/downstream_per_label.parquet",
        table1="results/tables/table1.parquet",
        per_label_md="results/tables/downstream_per_label.md",
        table1_md="results/tables/table1.md",
        table1_html=report(
            "results/tables/table1.html",
            caption="../report/figure.rst",
            category=lambda wildcards: get_report_section(Namespace(fig="table1")),
            subcategory=lambda wildcards: get_report_label(Namespace(fig="table1")),
        ),
        per_label_html=report(
            "results/tables/downstream_per_label.html",
            caption="../report/appA.rst",
            category=lambda wildcards: get_report_section(Namespace(fig="appA")),
            subcategory=lambda wildcards: get_report_label(Namespace(fig="appA")),
        ),
    log:
        "results/logs/downstream_tables.log",
    localrule: True
    conda:
        "../../envs/vaetransfer.yaml"
    params:
        # One caption file for both tables: it shows the text of the table it is attached to.
        caption=lambda wildcards: get_caption(Namespace(fig="table1")),
        caption_appA=lambda wildcards: get_caption(Namespace(fig="appA")),
    script:
        "../scripts/downstream_tables.py"
