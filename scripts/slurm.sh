#!/usr/bin/env bash
# A one-node Slurm on 127.0.0.1 for anglesim's Slurm tests (CI, or a test machine as root):
#
#   sudo bash scripts/slurm.sh start    install when missing, configure, start, wait until idle
#   sudo bash scripts/slurm.sh stop     cancel every job, stop the daemons this script started
#   bash scripts/slurm.sh status        the daemons' pids and sinfo
#
# Installs Debian's packages (slurmctld slurmd slurm-client munge) when missing; writes a
# minimal /etc/slurm/slurm.conf for one node (CPUs and memory from `slurmd -C`, no cgroups,
# no accounting, end states in jobcomp/filetxt) and refuses to replace a slurm.conf it did not
# write; starts munged as the munge user, `slurmctld -c` and `slurmd -N <node>`, recording their
# pids in $ANGLESIM_SLURM_DIR (default /tmp/anglesim-slurm), and stops them by those pids.
# No systemd needed. Not for a real cluster.
set -euo pipefail

STATE=${ANGLESIM_SLURM_DIR:-/tmp/anglesim-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by anglesim scripts/slurm.sh"
NODE=anglesim-node
PARTITION=debug

say() { echo "slurm.sh: $*" >&2; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

pid_of() { [ -f "$STATE/$1.pid" ] && cat "$STATE/$1.pid" || true; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
      && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || { say "installing Slurm needs root"; exit 1; }
  say "installing slurmctld slurmd slurm-client munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge \
    >/dev/null 2>"$STATE/apt.log" || {
    apt-get update -qq >/dev/null 2>>"$STATE/apt.log"
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge \
      >/dev/null 2>>"$STATE/apt.log" || { say "apt-get failed, see $STATE/apt.log"; exit 1; }
  }
}

configure() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    say "$CONF exists and was not written by this script; not replacing it"
    exit 1
  fi
  mkdir -p /etc/slurm "$STATE/state" "$STATE/spool"
  # the node as slurmd sees it: "NodeName=host CPUs=2 Boards=1 ... RealMemory=24000"
  local hw cpus mem
  hw=$(slurmd -C | head -n 1)
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  cat >"$CONF" <<EOF
$MARK
ClusterName=anglesim
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=1024
EOF
}

start_munge() {
  if alive "$(pid_of munged)"; then return; fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
      mungekey --create --force >/dev/null
    else
      dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    fi
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$STATE/munged.pid"
}

wait_idle() {
  local state=""
  for _ in $(seq 300); do
    state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
    case "$state" in
      idle*|mix*|alloc*) return 0 ;;
      down*|drain*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.1
  done
  say "the node did not become idle (state '$state'); see $STATE/*.log"
  return 1
}

start() {
  [ "$(id -u)" = 0 ] || { say "start needs root"; exit 1; }
  mkdir -p "$STATE"
  install
  configure
  start_munge
  if ! alive "$(pid_of slurmctld)"; then
    slurmctld -c
  fi
  if ! alive "$(pid_of slurmd)"; then
    slurmd -N "$NODE"
  fi
  for _ in $(seq 50); do
    alive "$(pid_of slurmctld)" && alive "$(pid_of slurmd)" && break
    sleep 0.1
  done
  wait_idle
  say "one-node Slurm up: partition $PARTITION, node $NODE ($(sinfo -h -o '%c CPUs, %m MB'))"
}

stop() {
  if command -v scancel >/dev/null && alive "$(pid_of slurmctld)"; then
    scancel --full --partition="$PARTITION" 2>/dev/null || true
    for _ in $(seq 100); do
      [ -z "$(squeue -h -p "$PARTITION" 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  local name pid
  for name in slurmd slurmctld munged; do
    pid=$(pid_of "$name")
    if alive "$pid"; then
      kill "$pid"
      for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
      alive "$pid" && kill -9 "$pid"
    fi
    rm -f "$STATE/$name.pid"
  done
  say "stopped"
}

status() {
  local name ok=0
  for name in munged slurmctld slurmd; do
    if alive "$(pid_of "$name")"; then echo "$name: pid $(pid_of "$name")"; else echo "$name: not running"; ok=1; fi
  done
  command -v sinfo >/dev/null && sinfo 2>/dev/null || true
  return $ok
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
