#!/usr/bin/env bash
# Everything katbench measures on a CUDA machine, in one call (fits a 10-minute device slot):
# build the CUDA kernels, compare launch settings (bench tune), run the op tests on CUDA, then
# the op, block and model benchmarks. One log and the benchmark files land in OUT_DIR.
# Usage: bash scripts/gpu_check.sh OUT_DIR [quick|tune|full] [tune variants...]
#   quick: tests, the per-kernel profile and the headline benchmarks; tune: also `bench tune`
#   and ncu counters; full: tune, the op sweep (Figures 6/7), compiled model throughput and
#   digits training (needs hydra-core/omegaconf importable, e.g. from .whl/site).
set -euo pipefail
out=${1:-results/gpu_check}
mode=${2:-quick}
shift $(( $# > 2 ? 2 : $# ))
mkdir -p "$out"
log=$out/log.txt
# .whl/site: pure-Python packages the device image lacks (hydra-core, omegaconf, antlr4), copied
# there from a local install, for the digits training run.
export PYTHONPATH=$PWD:$PWD/.whl/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 \
    KATBENCH_BACKEND=compiled
step() { echo "=== $* ($(date +%T))" | tee -a "$log"; }
step gpu
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee -a "$log"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$log"
step build
python3 -c "from katbench.ops import load_kernels; print(load_kernels())" >/tmp/build.txt 2>&1 &
build=$!
if [ "$mode" != quick ]; then
    step tune
    python3 -m katbench.bench tune "$@" 2>&1 | tee -a "$log"
fi
wait $build || { cat /tmp/build.txt; exit 1; }
cat /tmp/build.txt >>"$log"
step pytest tests/ops and the other GPU-marked tests
python3 -m pytest tests/ops -q -p no:cacheprovider 2>&1 | tail -15 | tee -a "$log" || true
# (the files with GPU-marked tests outside tests/ops; others need packages the image may lack)
python3 -m pytest tests/test_mixers.py tests/bench/test_model.py -m cuda -q -p no:cacheprovider \
    2>&1 | tail -5 | tee -a "$log" || true
step profile
python3 scripts/profile_op.py 2>&1 | tee -a "$log"
if [ "$mode" = tune ]; then
    step ncu
    ncu --clock-control none -k regex:"forward_kernel|backward_kernel|reduce_partials" -c 12 \
        --section SpeedOfLight --section Occupancy --section LaunchStats \
        python3 scripts/profile_op.py --ncu --dtypes float32 bfloat16 >"$out/ncu.txt" 2>&1 || true
    grep -E "_kernel|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Registers Per|Achieved Occupancy|Theoretical Occupancy|Block Limit Reg" \
        "$out/ncu.txt" | tee -a "$log" | head -120
fi
sweep=--no-sweep
[ "$mode" = full ] && sweep=
step bench op
python3 -m katbench.bench op $sweep --out "$out/op" 2>&1 | tee -a "$log" | tail -25
step bench block
python3 -m katbench.bench block 2>&1 | tee -a "$log"
for mode in none both; do
    step bench block --recompute $mode
    python3 -m katbench.bench block --recompute $mode 2>&1 | tee -a "$log"
done
step profile blocks T
python3 scripts/profile_op.py --block T --recompute none both 2>&1 | grep -v -i warn | tee -a "$log"
step bench model "(eager and compiled, batch 128 and 256, 5 interleaved rounds)"
python3 -m katbench.bench model vit_tiny_patch16_224 kat_tiny_patch16_224 \
    --json "$out/throughput.json" 2>&1 | tee -a "$log"
step bench model --batch-size 512 --modes eager cuda-graph "(GPU-bound)"
python3 -m katbench.bench model vit_tiny_patch16_224 kat_tiny_patch16_224 vit_small_patch16_224 \
    kat_small_patch16_224 --batch-size 512 --modes eager cuda-graph --rounds 3 \
    --json "$out/throughput_b512.json" 2>&1 | tee -a "$log"
if [ "$mode" = full ] && python3 -c "import hydra, omegaconf" 2>/dev/null; then
    step digits on the GPU, paper profile, all mixers
    timeout 150 python3 -m katbench.run task=digits mixer=mlp,kan,grkan profile=paper \
        tracking.enabled=false results_dir="$out/results" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" \
        >"$out/digits.txt" || true
    grep "seed0:" "$out/digits.txt" | tee -a "$log" || true
    for f in "$out"/results/runs/*/*/*/metrics.json; do echo "$f"; cat "$f"; done >>"$log" 2>/dev/null || true
    rm -rf "$out/results"
fi
step done
