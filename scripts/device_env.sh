#!/usr/bin/env bash
# Source from the checkout's root on a bare GPU machine (the lent device) before any katbench
# command there: the first use copies the code to $KB_HOME/code (.devrun/src when present, made
# by `git archive HEAD | tar x -C .devrun/src`: exactly the commit recorded in every run; else
# the checkout), installs the wheels the image lacks (.whl/*.whl: hydra-core, omegaconf, antlr4;
# pytest-xdist and execnet for the `triton` tests; .whl/wheels/*.whl: RDKit for ZINC) into
# $KB_HOME/site and builds the CUDA kernels once; every use exports PYTHONPATH, KATBENCH_CACHE
# and KATBENCH_GIT_COMMIT and enters the code copy, so a later call that re-sends an edited
# checkout cannot change runs in flight.
#   source scripts/device_env.sh && python3 -m katbench.run task=digits mixer=grkan ...
home=${KB_HOME:-/tmp/kb}
if [ ! -d "$home/code" ]; then
    mkdir -p "$home"
    cp -r "$([ -d .devrun/src ] && echo .devrun/src || echo .)" "$home/code"
    install=(python3 -m pip install -q --no-index --no-deps --no-compile --target "$home/site")
    if compgen -G ".whl/*.whl" >/dev/null; then
        "${install[@]}" .whl/*.whl
    fi
    if compgen -G ".whl/wheels/*.whl" >/dev/null && ! python3 -c "import rdkit" 2>/dev/null; then
        "${install[@]}" .whl/wheels/*.whl ||
            echo "device_env.sh: .whl/wheels/ does not install here; ZINC needs RDKit" >&2
    fi
    if [ -f .devrun/commit ]; then cp .devrun/commit "$home/commit"; fi
fi
export PYTHONPATH=$home/code:$home/site PYTHONUNBUFFERED=1 KATBENCH_CACHE=$home/cache
if [ -f "$home/commit" ]; then
    KATBENCH_GIT_COMMIT=$(cat "$home/commit")
    export KATBENCH_GIT_COMMIT
fi
cd "$home/code" || return 1
if [ ! -f "$home/kernels.ok" ]; then
    python3 -c "from katbench.ops import load_kernels; print(load_kernels())" 2>&1 | tail -1
    touch "$home/kernels.ok"
fi
