# The 16 named representations of a checkpoint on an evaluation sample (its own dataset's, or
# another one's for cross-domain comparisons), in one .npz with a JSON sidecar.


rule dump_activations:
    input:
        unpack(get_activation_inputs),
    output:
        arrays="results/activations/{dataset}/{objective}/{hparam}/seed{seed}/step{step}/{eval_dataset}.npz",
        sidecar="results/activations/{dataset}/{objective}/{hparam}/seed{seed}/step{step}/{eval_dataset}.json",
    log:
        "results/logs/dump_activations/{dataset}/{objective}/{hparam}/seed{seed}/step{step}/{eval_dataset}.log",
    conda:
        "../../envs/vaetransfer.yaml"
    threads: 1
    # Portable resources only (GPU model and partition: profiles/slurm); grow with each retry.
    resources:
        gpu=1,
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    params:
        seed=config["similarity"]["activation_seed"],
        device=config["training"]["device"],
    script:
        "../scripts/dump_activations.py"
