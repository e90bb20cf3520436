# vaetransfer: how good is a VAE at transfer learning, and which parts of it must be retrained?
# Reproduces Bonheme & Grzes (arXiv 2304.10767). `snakemake --profile profiles/local` runs the
# embedded default (config/quick.yaml); `snakemake -n` plans the paper-scale config/config.yaml.
from snakemake.utils import min_version

min_version("9.14.1")


# The paper-scale config, unless config files are given with --configfile: those then replace it
# (they are complete experiments, not patches). Jobs that Snakemake spawns (SLURM) receive the
# same --configfile, so they see the same config; --replace-workflow-config is not passed on to
# them, which is why this is decided here. Single keys can still be changed with --config.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# One regex per wildcard, so that e.g. `seed` never swallows a path segment.
wildcard_constraints:
    dataset=_alternatives(config["datasets"]),
    eval_dataset=_alternatives(config["datasets"]),
    architecture=_alternatives({r.architecture for r in RUNS}),
    objective=_alternatives({r.objective for r in RUNS}),
    hparam=r"[0-9][0-9.e+\-]*",
    seed=r"\d+",
    step=r"\d+",
    family=_alternatives(plan.FAMILIES),
    shard=r"\d+",
    block=_alternatives_or_none({b for found in BLOCKS.values() for b in found}),
    source=_alternatives(config["datasets"]),
    target=_alternatives(config["datasets"]),
    variant=VARIANT_PATTERN,
    encoder=_alternatives(config["datasets"]),
    label=r"[A-Za-z0-9_]+",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/activations.smk"
include: "workflow/rules/similarity.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/downstream.smk"


rule all:
    default_target: True
    input:
        get_all_targets(),
    localrule: True
