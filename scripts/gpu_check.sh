#!/usr/bin/env bash
# Build the CUDA kernels, run the GPU-marked tests and the op benchmark on a CUDA machine.
# Usage: bash scripts/gpu_check.sh [OUT_DIR]   (logs, CSV and PNG land in OUT_DIR)
set -euo pipefail
out=${1:-results/gpu_check}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 KATBENCH_BACKEND=compiled
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
start=$(date +%s)
python3 -c "from katbench.ops import load_kernels; print(load_kernels())"
echo "extension build + load: $(( $(date +%s) - start )) s"
python3 -m pytest tests/ops -q -p no:cacheprovider 2>&1 | tee "$out/pytest_ops.txt" | tail -5
python3 -m katbench.bench op "${BENCH_ARGS[@]:---no-sweep}" --out "$out" 2>&1 | tee "$out/bench_op.txt"
