#!/usr/bin/env bash
# A one-node Slurm cluster on this machine for the Slurm tests (Debian's slurm-wlm and munge):
# munged, slurmctld and slurmd with their own config, keys, state, sockets, PID and log files,
# all under DIR, on free ports; no accounting. As root (slurmd starts the jobs).
#
#   env_lines=$(tests/slurm/cluster.sh start DIR) && eval "$env_lines"   # exports SLURM_CONF, PRLF_SLURM_CLUSTER
#   tests/slurm/cluster.sh stop DIR                                     # cancels the jobs, stops the daemons
#
# start prints the export lines on stdout (everything else goes to stderr) and stops what it
# started if the cluster does not come up; stop is safe to run on a DIR never (or half) started.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
conf=$dir/slurm.conf
export SLURM_CONF=$conf

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# whether PID is still the daemon NAME: not exited (nor a zombie), not a later process with its PID
running() { [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }

stop() {
  local daemon pid
  if pid=$(cat "$dir/slurmctld.pid" 2>/dev/null) && running "$pid" slurmctld; then
    scancel --quiet --full --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 20); do  # the jobs' steps get SIGTERM, then SIGKILL after KillWait
      [ -z "$(squeue --noheader --format=%i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  for daemon in slurmd slurmctld munged; do
    if pid=$(cat "$dir/$daemon.pid" 2>/dev/null) && running "$pid" "$daemon"; then
      kill "$pid"
      for _ in $(seq 20); do running "$pid" "$daemon" || break; sleep 0.25; done
      if running "$pid" "$daemon"; then kill -9 "$pid"; fi
    fi
    rm -f "$dir/$daemon.pid"
  done
}

start() {
  for tool in munged slurmctld slurmd sbatch; do
    command -v "$tool" >/dev/null || { echo "cluster.sh: $tool not found (apt-get install slurm-wlm munge)" >&2; exit 1; }
  done
  stop  # a previous cluster in DIR
  trap 'echo "cluster.sh: the cluster did not start; logs in $dir" >&2; stop' ERR
  mkdir -p "$dir/state" "$dir/spool"
  [ -f "$dir/munge.key" ] || { mungekey --create --keyfile="$dir/munge.key"; chmod 400 "$dir/munge.key"; }
  # --force: munged refuses a socket under a directory that not everyone can search (mktemp -d's)
  munged --force --socket="$dir/munge.socket" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" \
         --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"
  local cpus mem_mb
  cpus=$(nproc)
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  cat > "$conf" <<EOF
ClusterName=prlftest
SlurmctldHost=localhost
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=$(id -un)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_min_interval=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=2
KillWait=10
InactiveLimit=0
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  slurmctld -i -f "$conf"
  slurmd -N localhost -f "$conf"
  local i
  for i in $(seq 60); do  # up when the controller answers and the node takes jobs
    if scontrol ping >/dev/null 2>&1 && sinfo --noheader --format=%t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      trap - ERR
      echo "export SLURM_CONF=$conf PRLF_SLURM_CLUSTER=$dir"
      return 0
    fi
    sleep 0.5
  done
  echo "cluster.sh: no idle node after 30 s: $(sinfo --noheader 2>&1 | head -1)" >&2
  false
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
