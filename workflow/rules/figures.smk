# Figures of the paper as named targets: `snakemake fig2` re-draws Fig. 2 from the table.


rule plot_heatmap:
    input:
        "results/tables/similarity.parquet",
    output:
        png=report(
            "results/figures/{fig}.png",
            caption="../report/heatmap.rst",
            category="Similarity heatmaps",
        ),
        pdf="results/figures/{fig}.pdf",
    log:
        "results/logs/plot_heatmap/{fig}.log",
    localrule: True
    conda:
        "../../envs/vaetransfer.yaml"
    params:
        figure=lambda wildcards: wildcards.fig,
        spec=lambda wildcards: get_figure_params(wildcards.fig),
    script:
        "../scripts/plot_heatmap.py"


rule fig2:
    input:
        "results/figures/fig2.png",
        "results/figures/fig2.pdf",
    localrule: True


rule fig5a:
    input:
        "results/figures/fig5a.png",
        "results/figures/fig5a.pdf",
    localrule: True


rule fig5b:
    input:
        "results/figures/fig5b.png",
        "results/figures/fig5b.pdf",
    localrule: True
