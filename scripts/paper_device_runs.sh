#!/usr/bin/env bash
# The paper-profile runs still missing from docs/results (issue 19) on one lent GPU machine, in
# calls of at most 10 minutes on the same warm machine: PATTERN and CLUSTER x mlp/kan/grkan x
# seeds 0-3 (padded batches, CUDA graphs, compiled evaluation: docs/graph.md), or the slice of
# them one session's device time allows (`finish` brings unfinished runs back with their
# checkpoints; RESUME= continues them in the next session). Queues of scripts/run_queue.py (via
# scripts/gpu_queue.sh), results under $KB_HOME (default /tmp/kb). Tabular runs (tab) beside
# graph runs slow the graph epochs ~5x (docs/running.md): run them first.
#   bash scripts/paper_device_runs.sh tab S      set up, start the 10 B-spline kan tabular runs
#                                                (bank_marketing, 1995_income; done 2026-12-07)
#   bash scripts/paper_device_runs.sh graph S    set up, build the graphs, start the graph runs
#                                                (the first seed first, the others once it has
#                                                compiled, from the FX graph cache); report at S s
#   bash scripts/paper_device_runs.sh more S     start GRAPH_SEEDS as one more queue ($QUEUE,
#                                                default graph3) beside the running ones (once a
#                                                report shows the GPU has room); SLOTS= at most
#                                                that many at once (default: all); report at S s
#   bash scripts/paper_device_runs.sh probe      a PATTERN step (mlp, grkan; padded, CUDA graphs) in
#                                                float32, with FlexAttention, with TF32 matmuls
#                                                and under bf16 autocast: wall, host and GPU ms
#                                                (about 4 min)
#   bash scripts/paper_device_runs.sh resume S   set up, unpack every queue packed in $RESUME (what
#                                                `finish` wrote, e.g. the committed unfinished/) and
#                                                restart each as it was started (its queue.json);
#                                                report at S s
#   bash scripts/paper_device_runs.sh speed      issue 22 on an idle GPU (before or after the runs):
#                                                the KAT-T block's host ops and KAT-T / ViT-T
#                                                eager images/s into $OUT (70 s on an H100)
#   bash scripts/paper_device_runs.sh triton     issue 24 on an idle GPU: the op's gradient tests on
#                                                the Triton kernels (8 workers with pytest-xdist
#                                                from .whl/), then `bench block` at T (GPU and
#                                                wall time of grkan, grkan[triton] and mlp) into
#                                                $OUT
#   bash scripts/paper_device_runs.sh watch S    report at S s, then pack every queue as it stands
#                                                (runs keep running) into $OUT, as `finish` does
#                                                (S = the call's limit - 60)
#   bash scripts/paper_device_runs.sh finish S   once every queue is done, or at S s, stop every
#                                                run (they checkpoint) and pack the run folders
#                                                and logs into $OUT; stopping and packing take up
#                                                to 2.5 min: S = the call's limit - 150
# GRAPH_TASKS (pattern,cluster), GRAPH_MIXERS (mlp,kan,grkan) and GRAPH_SEEDS (0,1,2,3) pick the
# graph runs, e.g. GRAPH_TASKS=pattern GRAPH_SEEDS=0,1 for six; GRAPH_EXTRA adds overrides to
# every graph run (e.g. "trainer.matmul_precision=high"; "task.data_seed=9" another draw of the
# graphs, which `more` builds first).
# RESUME=DIR (resume, graph) unpacks DIR/<queue>/runs.tgz.part* (what `finish` packed into $OUT,
# unfinished runs with their checkpoints) into that queue's folder: its runs continue where an
# earlier session stopped them, finished ones are skipped. `resume` restarts every such queue with
# the arguments it was started with; `graph` starts only the queue "graph", with GRAPH_*.
# graph runs the processes under CUDA MPS (kernels of different runs overlap) where the machine
# has nvidia-cuda-mps-control; MPS=0 does not, as needed while other CUDA processes (tabular runs
# of `tab`) still run, since an MPS server may wait for CUDA contexts outside it to end.
# TAB_MODE=reduce-overhead (tab) replays the tabular steps as CUDA graphs too (default:
# torch.compile's default mode).
set -uo pipefail
mode=${1:?tab, graph, resume, more, probe, speed, triton, watch or finish}; wait_s=${2:-0}
start_time=$(date +%s)
export TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-4}   # many compiling
                                                                           # processes share the cores
home=${KB_HOME:-/tmp/kb}
elapsed() { echo $(( $(date +%s) - start_time )); }
say() { echo "[$(elapsed) s] $*"; }
queue() { KB_RESULTS="$home/$1" bash scripts/gpu_queue.sh "${@:2}"; }
# start_queue NAME COMMAND ARGS...: `queue NAME COMMAND ARGS...` (start or restart) in the
# background, detached from this call; returns once the queue runs (its first "queue:" line comes
# after its queue.pid, which until_idle watches) or has ended, or after 120 s
start_queue() {
    (KB_RESULTS="$home/$1" setsid bash scripts/gpu_queue.sh "${@:2}" \
        > "$home-$1.txt" 2>&1 < /dev/null &)
    for _ in $(seq 120); do grep -q '^queue:' "$home-$1.txt" 2>/dev/null && return; sleep 1; done
    say "queue $1 has not started after 120 s: $home-$1.txt"
}
GRAPH_TASKS=${GRAPH_TASKS:-pattern,cluster}; GRAPH_MIXERS=${GRAPH_MIXERS:-mlp,kan,grkan}
GRAPH_SEEDS=${GRAPH_SEEDS:-0,1,2,3}
# shellcheck disable=SC2206  # GRAPH_EXTRA: whitespace-separated overrides
GRAPH=(--profile paper --tasks "$GRAPH_TASKS" --mixers "$GRAPH_MIXERS" trainer.device=cuda
       tracking.enabled=false trainer.compile=true trainer.compile_mode=reduce-overhead
       task.pad_nodes=auto trainer.checkpoint_every_s=300 ${GRAPH_EXTRA:-})
queues() {   # the queues' names: folders under $home with a logs/ folder
    for logs in "$home"/*/logs; do [ -d "$logs" ] && basename "$(dirname "$logs")"; done
}
count() { tr ',' '\n' <<< "$1" | grep -c .; }   # items of a comma-separated list
report() {
    for name in $(queues); do echo "== $name"; queue "$name" status | cut -c1-170; done
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
    uptime
}
sleep_until() { local left=$(( $1 - $(elapsed) )); [ "$left" -le 0 ] || sleep "$left"; }
# until_idle S: until no queue runs (run_queue.py removes its queue.pid when done) or S s
until_idle() {
    while compgen -G "$home/*/queue.pid" >/dev/null && [ "$(elapsed)" -lt "$1" ]; do sleep 5; done
}
# start_mps: the CUDA MPS daemon (kernels of different runs overlap), unless MPS=0
start_mps() {
    if [ "${MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
        nvidia-cuda-mps-control -d && say "MPS daemon started"
    elif [ "${MPS:-1}" = 1 ]; then
        say "no nvidia-cuda-mps-control here: the runs time-slice the GPU"
    fi
}
# unpack_resume: every $RESUME/<queue>/runs.tgz.part* into $home/<queue>; prints the queues' names
unpack_resume() {
    for parts in "${RESUME:?RESUME=<folder of packed queues>}"/*/; do
        compgen -G "${parts}runs.tgz.part*" > /dev/null || continue   # no pack (or no folder)
        name=$(basename "$parts"); mkdir -p "$home/$name"
        cat "$parts"runs.tgz.part* | tar xz -C "$home/$name" && say "$name: unpacked $parts" >&2 &&
            echo "$name"
    done
}
case $mode in
tab)
    (source scripts/device_env.sh) || exit 1   # the code copy and the kernels, once
    start_queue tab start --profile paper --tasks tab_bank_marketing,tab_1995_income --mixers kan \
        --seeds 0,1,2,3,4 --slots 10 trainer.device=cuda tracking.enabled=false trainer.compile=true \
        "trainer.compile_mode=${TAB_MODE:-default}"
    sleep_until "$wait_s"; report ;;
resume)
    (source scripts/device_env.sh) || exit 1
    start_mps
    for name in $(unpack_resume); do
        if [ -f "$home/$name/queue.json" ]; then
            start_queue "$name" restart && say "$name: restarted"
        else
            say "$name: no queue.json (packed before queues recorded their arguments): start it" \
                "with its own arguments (graph or more, GRAPH_*)"
        fi
    done
    sleep_until "$wait_s"; report ;;
graph)
    (source scripts/device_env.sh) || exit 1
    start_mps
    [ -z "${RESUME:-}" ] || unpack_resume > /dev/null
    queue graph prepare --profile paper --tasks "$GRAPH_TASKS" > "$home-prepare.txt" 2>&1
    tail -2 "$home-prepare.txt"; say "graph data ready"
    per_seed=$(( $(count "$GRAPH_TASKS") * $(count "$GRAPH_MIXERS") ))
    start_queue graph start --seeds "${GRAPH_SEEDS%%,*}" --slots "$per_seed" "${GRAPH[@]}"
    if [[ $GRAPH_SEEDS == *,* ]]; then
        for _ in $(seq 60); do   # the first seed compiled: an epoch line in half of its logs
            sleep 5
            [ "$(grep -l ' epoch 1/' "$home"/graph/logs/*.txt 2>/dev/null | wc -l)" -ge \
                $(( (per_seed + 1) / 2 )) ] && break
        done
        say "graph seed ${GRAPH_SEEDS%%,*} compiled"
        start_queue graph2 start --seeds "${GRAPH_SEEDS#*,}" \
            --slots $(( per_seed * $(count "${GRAPH_SEEDS#*,}") )) "${GRAPH[@]}"
    fi
    sleep_until "$wait_s"; report ;;
more)
    # shellcheck disable=SC2086  # GRAPH_EXTRA: whitespace-separated overrides (e.g. a data_seed)
    queue "${QUEUE:-graph3}" prepare --profile paper --tasks "$GRAPH_TASKS" ${GRAPH_EXTRA:-} |
        tail -1
    start_queue "${QUEUE:-graph3}" start --seeds "$GRAPH_SEEDS" \
        --slots "${SLOTS:-$(( $(count "$GRAPH_TASKS") * $(count "$GRAPH_MIXERS") * $(count "$GRAPH_SEEDS") ))}" \
        "${GRAPH[@]}"
    sleep_until "$wait_s"; report ;;
probe)
    source scripts/device_env.sh || exit 1
    for numerics in trainer.matmul_precision=highest task.flex_attention=true \
                    trainer.matmul_precision=high trainer.amp=true; do
        say "$numerics"
        timeout -k 10 150 python3 scripts/profile_graph_step.py --task pattern --mixers mlp grkan \
            --compile --compile-mode reduce-overhead --kernels 4 task.pad_nodes=auto \
            task.generator.train_per_pattern=10 task.generator.eval_per_pattern=2 "$numerics" 2>&1 |
            grep -E "^pattern|^ +[0-9.]+ ms"
    done ;;
speed)
    source scripts/device_env.sh || exit 1
    timeout -k 10 150 python3 scripts/profile_op.py --block T --recompute none --host-ops 40 \
        2>&1 | grep -v -i warn > "${OUT:?}/block_T_host_ops.txt"
    grep -E "^block|host self time" "$OUT/block_T_host_ops.txt"
    timeout -k 10 240 python3 -m katbench.bench model vit_tiny_patch16_224 kat_tiny_patch16_224 \
        --modes eager --json "$OUT/throughput_eager.json" 2>&1 | grep -v -i warn |
        tee "$OUT/bench_model_T_eager.txt" ;;
triton)
    source scripts/device_env.sh || exit 1
    # each Triton test compiles its own kernels (about 6 s on one core): 8 workers where
    # pytest-xdist is installed (.whl/), else the 59 tests outrun the 180 s (2026-12-07h)
    workers=$(python3 -c "import xdist" 2>/dev/null && echo "-n 8")
    # shellcheck disable=SC2086  # $workers: empty or two words
    timeout -k 10 180 python3 -m pytest tests/ops -q -x $workers \
        -k "triton and (backward or bias or shared or bitwise or many_programs)" 2>&1 |
        tail -4 | tee "${OUT:?}/pytest_ops_triton.txt"
    timeout -k 10 150 python3 -m katbench.bench block --sizes T --mixers grkan 2>&1 |
        grep -v -i warn | tee "$OUT/bench_block_T.txt" ;;
watch)
    sleep_until "$wait_s"; report
    # the runs so far, with their latest checkpoints (every 300 s), so that a session cut off
    # before `finish` loses at most that much training: commit these packs under unfinished/
    for name in $(queues); do queue "$name" pack "${OUT:?}/$name" --checkpoints; done ;;
finish)
    until_idle "$wait_s"; report
    for name in $(queues); do   # each queue packed as soon as it has stopped (a stop may take
                                # up to 2 min): unfinished runs with their checkpoints, which
                                # RESUME= continues
        (queue "$name" stop; queue "$name" pack "${OUT:?}/$name" --checkpoints) &
    done; wait
    tar czf "$OUT/logs.tgz" "$home"-*.txt "$home"/*/logs 2>/dev/null ;;
*)
    echo "usage: bash scripts/paper_device_runs.sh tab|graph|resume|more|probe|speed|triton|watch|finish [seconds]" >&2
    exit 2 ;;
esac
say "done"
