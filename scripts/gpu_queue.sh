#!/usr/bin/env bash
# run_queue.py on a bare GPU machine (the lent device): sets the machine up with
# scripts/device_env.sh (a private copy of the code, the wheels the image lacks, the compiled
# kernels), then passes its arguments to run_queue.py with results in $KB_RESULTS (default
# $KB_HOME/results).
#   bash scripts/gpu_queue.sh start --tasks pattern --seeds 0,1 --slots 6 --stop-after-s 1200
#   bash scripts/gpu_queue.sh status
#   KB_RESULTS=/tmp/kb/tab bash scripts/gpu_queue.sh start ...   # a second queue beside it
set -euo pipefail
home=${KB_HOME:-/tmp/kb}
# shellcheck source=scripts/device_env.sh
source "$(dirname "$0")/device_env.sh"
exec python3 scripts/run_queue.py --results "${KB_RESULTS:-$home/results}" "$@"
