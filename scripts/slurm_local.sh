#!/usr/bin/env bash
# A one-node SLURM cluster on this machine: Debian's slurm-wlm (22.05) and munge, every file in
# one folder, stopped cleanly. For trying profiles/slurm and for tests/test_slurm.py (which
# .ci/run runs).
#
#   bash scripts/slurm_local.sh install        # apt-get install slurmctld slurmd slurm-client munge
#   bash scripts/slurm_local.sh start DIR      # munged, slurmctld, slurmd
#   bash scripts/slurm_local.sh stop DIR       # cancels the jobs left, stops the three daemons
#
# The config is DIR/slurm.conf, linked from /etc/slurm/slurm.conf for as long as the cluster runs
# (start refuses where another config is installed, and replaces a link left by a cluster of
# this script that is not running any more): the executor plugin's job step drops every
# SLURM_* variable, SLURM_CONF included, before its `srun`, so only the default path reaches it.
# The node is this machine (its cores and 90% of its memory) with a count-only GRES gpu:1, so a
# job asking for `--gpus=1` is scheduled without a GPU being there. Partitions: `cpu` (default)
# and `batch`. No accounting database (AccountingStorageType=none): job states come from
# `squeue`, which keeps finished jobs for MinJobAge=600 s, so Snakemake's SLURM executor needs
# `--slurm-status-command squeue` here. Ports are free ones picked at start.
set -euo pipefail

LINK=/etc/slurm/slurm.conf

die() { echo "slurm_local.sh: $*" >&2; exit 2; }

alive() {   # alive PID: the process exists and is not a zombie
    local stat
    [ -n "$1" ] && stat=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${stat#Z}" = "$stat" ]
}

pid_of() {   # pid_of PIDFILE: its pid, or nothing
    cat "$1" 2>/dev/null || true
}

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
            && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return
    fi
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir node cpus mem_mb ctld_port slurmd_port old
    [ "$(id -u)" = 0 ] || die "start needs root (slurmd runs jobs as their user)"
    dir=$(realpath -m "$1")
    old=$(dirname "$(readlink "$LINK" 2>/dev/null || echo /nonexistent/x)")
    if [ -L "$LINK" ] && [ -f "$old/.slurm_local" ] && ! alive "$(pid_of "$old/slurmctld.pid")"
    then
        rm "$LINK"
    fi
    if [ -e "$LINK" ] || [ -L "$LINK" ]; then
        old=$(readlink "$LINK" || true)
        die "$LINK exists${old:+ (-> $old)}: a SLURM config is installed here already; stop" \
            "that cluster first (scripts/slurm_local.sh stop DIR)"
    fi
    mkdir -p "$dir"/{state,spool,log,munge}
    touch "$dir/.slurm_local"   # marks a folder of this script (start may replace its link)
    chmod 700 "$dir/munge"
    node=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    ctld_port=$(free_port)
    slurmd_port=$(free_port)

    head -c 1024 /dev/urandom > "$dir/munge/munge.key"
    chmod 400 "$dir/munge/munge.key"
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed"

    cat > "$dir/slurm.conf" <<EOF
ClusterName=katbench
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
KillWait=30
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=batch Nodes=$node MaxTime=INFINITE State=UP
EOF
    echo "NodeName=$node Name=gpu File=/dev/null" > "$dir/gres.conf"   # count-only: no device
    mkdir -p "$(dirname "$LINK")"
    ln -s "$dir/slurm.conf" "$LINK"

    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -c -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF" -N "$node"
    for _ in $(seq 120); do
        if [ "$(sinfo -h -n "$node" -o %T 2>/dev/null | sort -u)" = idle ]; then
            return
        fi
        sleep 0.5
    done
    for log in "$dir"/log/*.log; do tail -n 5 "$log" >&2; done
    die "the node did not come up in 60 s; logs in $dir/log"
}

stop_pid() {   # stop_pid PIDFILE: TERM, wait up to 15 s, then KILL
    local pid
    pid=$(pid_of "$1")
    alive "$pid" || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 30); do
        alive "$pid" || return 0
        sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    local dir
    dir=$(realpath -m "$1")
    [ -f "$dir/slurm.conf" ] || return 0
    export SLURM_CONF="$dir/slurm.conf"
    if alive "$(pid_of "$dir/slurmctld.pid")"; then
        scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
        for _ in $(seq 60); do   # KillWait is 30 s: the jobs' own processes end first
            [ -z "$(squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    stop_pid "$dir/slurmd.pid"
    stop_pid "$dir/slurmctld.pid"
    stop_pid "$dir/munge/munged.pid"
    if [ "$(readlink "$LINK" 2>/dev/null)" = "$dir/slurm.conf" ]; then
        rm "$LINK"
    fi
}

case "${1:-}" in
    install) install ;;
    start) [ $# = 2 ] || die "usage: $0 start DIR"; start "$2" ;;
    stop) [ $# = 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
    *) die "usage: $0 install | start DIR | stop DIR" ;;
esac
