#!/usr/bin/env bash
# Everything katbench measures on a CUDA machine, in one call (fits a 10-minute device slot):
# build the CUDA kernels, run the GPU-marked and op tests, then the op, block and model
# benchmarks. Logs, CSV and PNG land in OUT_DIR.
# Usage: bash scripts/gpu_check.sh OUT_DIR [quick|full]
set -euo pipefail
out=${1:-results/gpu_check}
mode=${2:-quick}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 KATBENCH_BACKEND=compiled
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
start=$(date +%s)
python3 -c "from katbench.ops import load_kernels; print(load_kernels())"
echo "extension build + load: $(( $(date +%s) - start )) s"
python3 -m pytest tests/ops -q -p no:cacheprovider 2>&1 | tee "$out/pytest_ops.txt" | tail -4
sweep=--no-sweep
[ "$mode" = full ] && sweep=
python3 -m katbench.bench op $sweep --out "$out" 2>&1 | tee "$out/bench_op.txt" | tail -20
python3 -m katbench.bench block 2>&1 | tee "$out/bench_block.txt"
python3 -m katbench.bench model vit_tiny_patch16_224 kat_tiny_patch16_224 vit_small_patch16_224 \
    kat_small_patch16_224 --json "$out/throughput.json" 2>&1 | tee "$out/bench_model.txt"
