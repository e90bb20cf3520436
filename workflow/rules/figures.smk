# Every figure and table of the paper as a named target (`snakemake fig4`, `snakemake appF`,
# `snakemake table1`, ...): each reads only aggregated tables and builds only what it needs.
# Files: results/figures/<name>.{png,pdf}; captions (vaetransfer.captions) and report sections
# come from the figure's name.


rule plot_heatmap:
    input:
        get_figure_tables,
    output:
        png=report(
            "results/figures/{fig}.png",
            caption="../report/figure.rst",
            category=get_report_section,
            subcategory=get_report_label,
        ),
        pdf="results/figures/{fig}.pdf",
    log:
        "results/logs/plot_heatmap/{fig}.log",
    wildcard_constraints:
        fig=_alternatives_or_none(HEATMAP_FIGURES),
    localrule: True
    conda:
        "../../envs/vaetransfer.yaml"
    params:
        figure=lambda wildcards: wildcards.fig,
        spec=lambda wildcards: get_figure_params(wildcards.fig),
        caption=get_caption,
    script:
        "../scripts/plot_heatmap.py"


# Fig. 6 / Appendix B (progressive unfreezing) and Figs. 7, 8 (reconstructions) are drawn by the
# transfer rules; their named files are copies of the configured pair's drawing.
rule pair_figure:
    input:
        get_pair_figure_source,
    output:
        png=report(
            "results/figures/{pfig}.png",
            caption="../report/figure.rst",
            category=get_report_section,
            subcategory=get_report_label,
        ),
        pdf="results/figures/{pfig}.pdf",
    log:
        "results/logs/pair_figure/{pfig}.log",
    wildcard_constraints:
        pfig=_alternatives_or_none(PAIR_FIGURE_FILES),
    localrule: True
    conda:
        "../../envs/vaetransfer.yaml"
    params:
        png=lambda wildcards: get_pair_figure_files(wildcards)[0],
        pdf=lambda wildcards: get_pair_figure_files(wildcards)[1],
        caption=get_caption,
    script:
        "../scripts/copy_figure.py"


# Appendix J: convergence curves, from one loss table per dataset (window means of every run).
rule aggregate_losses:
    input:
        get_dataset_losses,
    output:
        "results/tables/losses/{dataset}.parquet",
    log:
        "results/logs/aggregate_losses/{dataset}.log",
    localrule: True
    conda:
        "../../envs/vaetransfer.yaml"
    params:
        runs=get_dataset_loss_runs,
    script:
        "../scripts/aggregate_losses.py"


rule plot_losses:
    input:
        get_loss_tables,
    output:
        png=report(
            "results/figures/appJ.png",
            caption="../report/figure.rst",
            category=get_report_section,
            subcategory=get_report_label,
        ),
        pdf="results/figures/appJ.pdf",
    log:
        "results/logs/plot_losses.log",
    localrule: True
    conda:
        "../../envs/vaetransfer.yaml"
    params:
        spec=lambda wildcards: config["figures"].get("appJ", {}),
        caption=get_caption,
    script:
        "../scripts/plot_losses.py"


# The paper's claims, each checked against this run's numbers (vaetransfer.findings).
rule findings:
    input:
        unpack(get_findings_inputs),
    output:
        parquet="results/tables/findings.parquet",
        markdown="results/tables/findings.md",
        html=report(
            "results/tables/findings.html",
            caption="../report/findings.rst",
            category="0. Findings: does this run support the paper?",
            subcategory="The paper's claims on this run",
        ),
    log:
        "results/logs/findings.log",
    localrule: True
    conda:
        "../../envs/vaetransfer.yaml"
    params:
        # Declared so that editing the panels or the thresholds re-checks the claims.
        figures=config["figures"],
        thresholds=config.get("findings", {}).get("thresholds", {}),
    script:
        "../scripts/findings.py"


# ----------------------------------------------------------------------------- named targets


rule fig1:
    input:
        figure_files("fig1"),
    localrule: True


rule fig2:
    input:
        lambda wildcards: figure_files("fig2"),
    localrule: True


rule fig3:
    input:
        lambda wildcards: figure_files("fig3"),
    localrule: True


rule fig4:
    input:
        lambda wildcards: figure_files("fig4"),
    localrule: True


rule fig5:
    input:
        lambda wildcards: figure_files("fig5a") + figure_files("fig5b"),
    localrule: True


rule fig5a:
    input:
        lambda wildcards: figure_files("fig5a"),
    localrule: True


rule fig5b:
    input:
        lambda wildcards: figure_files("fig5b"),
    localrule: True


rule fig6:
    input:
        lambda wildcards: figure_files("fig6"),
    localrule: True


rule fig7:
    input:
        lambda wildcards: figure_files("fig7"),
    localrule: True


rule fig8:
    input:
        lambda wildcards: figure_files("fig8"),
    localrule: True


rule table1:
    input:
        lambda wildcards: figure_files("table1"),
    localrule: True


rule appA:
    input:
        lambda wildcards: figure_files("appA"),
    localrule: True


rule appB:
    input:
        lambda wildcards: figure_files("appB"),
    localrule: True


rule appF:
    input:
        lambda wildcards: figure_files("appF"),
    localrule: True


rule appG:
    input:
        lambda wildcards: figure_files("appG"),
    localrule: True


rule appH:
    input:
        lambda wildcards: figure_files("appH"),
    localrule: True


rule appI:
    input:
        lambda wildcards: figure_files("appI"),
    localrule: True


rule appJ:
    input:
        lambda wildcards: figure_files("appJ"),
    localrule: True


rule figures:
    input:
        lambda wildcards: [
            f for name in configured_figures() for f in figure_files(name)
        ],
    localrule: True
