#!/usr/bin/env bash
# Everything katbench measures on a CUDA machine, in one call (fits a 10-minute device slot):
# build the CUDA kernels, compare launch settings (bench tune), run the op tests on CUDA, then
# the op, block and model benchmarks. One log and the benchmark files land in OUT_DIR.
# Usage: bash scripts/gpu_check.sh OUT_DIR [quick|tune|full]
#   quick: tests + headline benchmarks; tune: also `bench tune`; full: also the op sweep.
set -euo pipefail
out=${1:-results/gpu_check}
mode=${2:-quick}
mkdir -p "$out"
log=$out/log.txt
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 KATBENCH_BACKEND=compiled
step() { echo "=== $* ($(date +%T))" | tee -a "$log"; }
step gpu
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee -a "$log"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$log"
step build
python3 -c "from katbench.ops import load_kernels; print(load_kernels())" >"$out/build.txt" 2>&1 &
build=$!
if [ "$mode" != quick ]; then
    step tune
    python3 -m katbench.bench tune 2>&1 | tee -a "$log"
fi
wait $build || { cat "$out/build.txt"; exit 1; }
cat "$out/build.txt" >>"$log"
step pytest tests/ops
python3 -m pytest tests/ops -q -p no:cacheprovider 2>&1 | tail -15 | tee -a "$log" || true
sweep=--no-sweep
[ "$mode" = full ] && sweep=
step bench op
python3 -m katbench.bench op $sweep --out "$out/op" 2>&1 | tee -a "$log" | tail -25
step bench block
python3 -m katbench.bench block 2>&1 | tee -a "$log"
step bench model
python3 -m katbench.bench model vit_tiny_patch16_224 kat_tiny_patch16_224 vit_small_patch16_224 \
    kat_small_patch16_224 --json "$out/throughput.json" 2>&1 | tee -a "$log"
step done
