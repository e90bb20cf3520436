# The named representations (vaetransfer.layers) of a checkpoint on an evaluation sample (its own dataset's, or
# another one's for cross-domain comparisons), in one .npz with a JSON sidecar; temp() by default
# (removed once every shard reading it has finished), kept with similarity.keep_activations.


rule dump_activations:
    input:
        unpack(get_activation_inputs),
    output:
        arrays=activation_output(
            "results/activations/{dataset}/{architecture}/{objective}/{hparam}/seed{seed}/step{step}/{eval_dataset}.npz"
        ),
        sidecar=activation_output(
            "results/activations/{dataset}/{architecture}/{objective}/{hparam}/seed{seed}/step{step}/{eval_dataset}.json"
        ),
    log:
        "results/logs/dump_activations/{dataset}/{architecture}/{objective}/{hparam}/seed{seed}/step{step}/{eval_dataset}.log",
    priority: get_dump_priority
    conda:
        "../../envs/vaetransfer.yaml"
    threads: 1
    # Portable resources only (GPU model and partition: profiles/slurm); grow with each retry.
    resources:
        gpu=1,
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    params:
        checkpoint=get_checkpoint_file,
        seed=config["similarity"]["activation_seed"],
        device=config["training"]["device"],
    script:
        "../scripts/dump_activations.py"


# The same for a transfer run (results/transfer/...): Fig. 5b's retrained-latents model.
use rule dump_activations as dump_transfer_activations with:
    input:
        unpack(get_transfer_activation_inputs),
    output:
        arrays=activation_output(
            "results/activations/transfer/{source}_to_{target}/{variant}/seed{seed}/step{step}/{eval_dataset}.npz"
        ),
        sidecar=activation_output(
            "results/activations/transfer/{source}_to_{target}/{variant}/seed{seed}/step{step}/{eval_dataset}.json"
        ),
    log:
        "results/logs/dump_activations/transfer/{source}_to_{target}/{variant}/seed{seed}/step{step}/{eval_dataset}.log",
    priority: get_transfer_dump_priority
    params:
        checkpoint=get_transfer_checkpoint_file,
        seed=config["similarity"]["activation_seed"],
        device=config["training"]["device"],
