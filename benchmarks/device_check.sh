#!/usr/bin/env bash
# The GPU checks of issue 5 ("Fast training") as one prepared device call, about 4-5 minutes on one
# H100/H200: the CUDA-only tests, then the training, stacked-training and similarity benchmarks on
# CUDA. Each part has its own time limit, so a slow part cannot eat the others' time; every part's
# output is kept in $OUT/<part>.txt (or ./device_check_out/ without $OUT) for benchmarks/README.md.
#
# Needs only what the device image has (python3 with torch, numpy, pandas, pyarrow, matplotlib,
# seaborn, scipy, pytest): the library runs from src/ through PYTHONPATH, no install.
#
#   bash benchmarks/device_check.sh                 # on the GPU machine (the `device` tool's run)
#   DEVICE=cpu SMOKE=1 bash benchmarks/device_check.sh  # here: the same script, tiny sizes, on CPU
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device_check_out}
mkdir -p "$out"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
if [[ -n ${SMOKE:-} ]]; then
    train_steps=3 stacked_steps=2 ks="1 2" sim_args="--naive-budget 1 --smoke"
else
    train_steps=300 stacked_steps=200 ks="1 2 4 8 16" sim_args="--naive-budget 20 --skip-procrustes-5000"
fi

part() { # part NAME SECONDS COMMAND...: run COMMAND under a time limit, keep its output
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}

{
    date -u
    nvidia-smi || true
    "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

# The tests skipped without a GPU (CUDA parametrisations of fastpath, stacked and similarity).
part tests 75 "$py" -m pytest -q -p no:cacheprovider -k cuda \
    tests/test_fastpath.py tests/test_stacked.py tests/test_similarity.py
part train 75 "$py" benchmarks/train.py --device "$device" --steps "$train_steps" --repeats 1
# shellcheck disable=SC2086  # ks is a list of numbers
part stacked 90 "$py" benchmarks/stacked.py --device "$device" --steps "$stacked_steps" --ks $ks \
    --modes vmap loop --repeats 1
# shellcheck disable=SC2086
part similarity 60 "$py" benchmarks/similarity.py --device "$device" $sim_args
