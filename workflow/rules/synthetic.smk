# Paper Figure 1 (Section 2.3): CKA vs Procrustes on random matrices; needs no trained model.


# plot_heatmap (figures.smk) also matches results/figures/fig1.{png,pdf}; Fig. 1 is not a heatmap.
ruleorder: figure1_synthetic > plot_heatmap


rule figure1_synthetic:
    output:
        table="results/tables/fig1.parquet",
        png=report(
            "results/figures/fig1.png",
            caption="../report/fig1.rst",
            category=lambda wildcards: get_report_section(Namespace(fig="fig1")),
            subcategory=lambda wildcards: get_report_label(Namespace(fig="fig1")),
        ),
        pdf="results/figures/fig1.pdf",
    log:
        "results/logs/figure1_synthetic.log",
    localrule: True
    conda:
        "../../envs/vaetransfer.yaml"
    script:
        "../scripts/figure1.py"
