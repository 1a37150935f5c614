#!/usr/bin/env bash
# run_queue.py on a bare GPU machine (the lent device): first use sets up a private copy of the
# code, the pure-Python packages the image lacks (wheels in .whl/: hydra-core, omegaconf,
# antlr4) and the compiled kernels; every call then passes its arguments to run_queue.py with
# results in $KB_RESULTS (default $KB_HOME/results). Runs execute from the copy, so a later call
# that re-sends an edited checkout cannot change runs in flight. The code copied is .devrun/src when present
# (`git archive HEAD | tar x -C .devrun/src`: exactly the commit recorded in every run), else
# the checkout.
#   bash scripts/gpu_queue.sh start --tasks pattern --seeds 0,1 --slots 6 --stop-after-s 1200
#   bash scripts/gpu_queue.sh status
#   KB_RESULTS=/tmp/kb/tab bash scripts/gpu_queue.sh start ...   # a second queue beside it
set -euo pipefail
home=${KB_HOME:-/tmp/kb}
if [ ! -d "$home/code" ]; then
    mkdir -p "$home"
    cp -r "$([ -d .devrun/src ] && echo .devrun/src || echo .)" "$home/code"
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --target "$home/site" \
            .whl/*.whl
    fi
    [ -f .devrun/commit ] && cp .devrun/commit "$home/commit"
fi
export PYTHONPATH=$home/code:$home/site PYTHONUNBUFFERED=1 KATBENCH_CACHE=$home/cache
[ -f "$home/commit" ] && KATBENCH_GIT_COMMIT=$(cat "$home/commit") && export KATBENCH_GIT_COMMIT
cd "$home/code"
if [ ! -f "$home/kernels.ok" ]; then
    python3 -c "from katbench.ops import load_kernels; print(load_kernels())" 2>&1 | tail -1
    touch "$home/kernels.ok"
fi
exec python3 scripts/run_queue.py --results "${KB_RESULTS:-$home/results}" "$@"
