#!/usr/bin/env bash
# Train one graph task's paper profile for all three mixers at once on one GPU (they are bound by
# the host, so three processes share the GPU well), bounded in wall time, with a log line every
# 5 epochs. One log per mixer and seed (<mixer>.txt for seed 0, else <mixer>-s<seed>.txt) and the
# final metrics land in OUT_DIR. SEEDS (default "0") lists the seeds, all run at once.
# Usage: [SEEDS="1 2"] bash scripts/gpu_graph.sh OUT_DIR [task] [hours] [extra overrides...]
#   e.g. bash scripts/gpu_graph.sh out zinc 0.12 task.dataset=micro_zinc   (no network: stand-in)
set -euo pipefail
out=${1:-results/gpu_graph}
task=${2:-zinc}
hours=${3:-0.12}
shift $(( $# > 3 ? 3 : $# ))
mkdir -p "$out"
# .whl/site: pure-Python packages the device image lacks (hydra-core, omegaconf, antlr4).
export PYTHONPATH=$PWD:$PWD/.whl/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# RDKit (SMILES -> graphs for ZINC) from a wheel carried in .whl/wheels when the image lacks it.
if [ "$task" = zinc ]; then
    python3 -c "import rdkit" 2>/dev/null ||
        python3 -m pip install -q --no-deps --no-index .whl/wheels/rdkit-*.whl
    python3 -c "import rdkit; print('rdkit', rdkit.__version__)"
fi
tracking=false
python3 -c "import mlflow" 2>/dev/null && tracking=true
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/log.txt"
python3 -c "from katbench.ops import load_kernels; print(load_kernels())" 2>&1 | tail -1 \
    | tee -a "$out/log.txt"   # build once before the three runs start
logs=()
for seed in ${SEEDS:-0}; do
    for mixer in mlp kan grkan; do
        name=$mixer
        [ "$seed" = 0 ] || name=$mixer-s$seed
        logs+=("$out/$name.txt")
        python3 -m katbench.run task="$task" mixer=$mixer seed="$seed" profile=paper \
            trainer.device=cuda trainer.progress=log trainer.log_every=5 \
            trainer.max_hours="$hours" tracking.enabled=$tracking results_dir="$out/results" \
            "$@" >"$out/$name.txt" 2>&1 &
    done
done
failed=0
for job in $(jobs -p); do wait "$job" || failed=$((failed + 1)); done
for f in "$out"/results/runs/*/*/*/metrics.json; do
    echo "== $f"; cat "$f"
done >>"$out/log.txt" 2>/dev/null || true
tail -n 3 "${logs[@]}" | tee -a "$out/log.txt"
rm -rf "$out/results"
[ "$failed" = 0 ] || { echo "$failed of ${#logs[@]} runs failed; see their logs" >&2; exit 1; }
