#!/usr/bin/env bash
# scripts/ci/slurm_local.sh - a throw-away Slurm cluster on this one machine, for CI and the `slurm` tests.
#
# Owner: the Slurm launch (issue 8). .ci/run calls `up` before the tests and `down` after them.
#
#   bash scripts/ci/slurm_local.sh up       install (Debian packages) if missing, start munged, write
#                                           /etc/slurm/slurm.conf, start slurmctld + one slurmd per
#                                           emulated node, wait until every node is idle.
#   bash scripts/ci/slurm_local.sh down     stop what `up` started (by PID), unless another live process
#                                           still holds the cluster (see "Holders"); `down --force` always.
#   bash scripts/ci/slurm_local.sh status   daemons, holders, sinfo, squeue.
#
# Needs root and Debian/Ubuntu (apt-get). No systemd and no cgroups are needed: the daemons are started
# directly, with proctrack/linuxproc and task/none. `up` exits non-zero only when it cannot bring the
# cluster up (the `slurm` tests then skip, saying why); it never leaves half-started daemons running.
#
# The cluster: GF_SLURM_NODES (default 2) emulated nodes gfci1..gfciN, all on this host (one slurmd each,
# `slurmd -N gfciK`, own port, own /dev/shm; names added to /etc/hosts as 127.0.0.1), each with this host's
# CPU layout, and its own TMPDIR (a TaskProlog exports GF_SLURM_DIR/nodetmp/<node> to every task).
# Partitions:
#   debug  default, PriorityTier=1, PreemptMode=REQUEUE, GraceTime=GF_SLURM_GRACETIME (60) s;
#   high   PriorityTier=10: a job here that needs the CPUs of `debug` jobs preempts them. With
#          SlurmctldParameters=preempt_send_user_signal a preempted job first receives its own --signal
#          (our scripts: B:USR1), then SIGTERM after GraceTime, then it is requeued.
# Speed knobs for tests: AuthInfo=cred_expire=5 (a requeued job may restart after ~6 s instead of 121 s)
# and SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2.
#
# Holders: `up` records its parent process (the CI shell) as a holder; `down` drops its parent and stops
# the cluster only when no other live holder remains, so that two CI runs on one machine do not pull the
# cluster from under each other. Dead holders do not count.
#
# Environment: GF_SLURM_DIR (/tmp/gf-slurm-local: state, spool, logs, pids), GF_SLURM_NODES (2),
# GF_SLURM_GRACETIME (60), GF_SLURM_KILLWAIT (30), GF_SLURM_TIMEOUT (60 s for the nodes to get idle),
# GF_SLURM_APT_TIMEOUT (600 s for apt-get).
set -euo pipefail

DIR=${GF_SLURM_DIR:-/tmp/gf-slurm-local}
NODES=${GF_SLURM_NODES:-2}
GRACE=${GF_SLURM_GRACETIME:-60}
KILLWAIT=${GF_SLURM_KILLWAIT:-30}
TIMEOUT=${GF_SLURM_TIMEOUT:-60}
APT_TIMEOUT=${GF_SLURM_APT_TIMEOUT:-600}
CONF=/etc/slurm/slurm.conf
TAG="# gf-train scripts/ci/slurm_local.sh"
SLURM_PKGS=(slurmctld slurmd slurm-client munge)
LINT_PKGS=(shellcheck)
LOCK=/run/lock/gf-slurm-local.lock

t0=$(date +%s%N)
log() { printf '[slurm_local %5.1fs] %s\n' "$(( ($(date +%s%N) - t0) / 1000000 ))e-3" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ processes
# Alive = /proc/PID exists and is not a zombie (this machine's init reaps exited daemons late).
alive() {
  local pid=${1:-} st
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
  st=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $st != Z && $st != X ]]
}
pidfile_pid() { if [[ -s $1 ]]; then cat "$1"; fi; }
stop_pidfile() {  # stop_pidfile FILE NAME: TERM, wait up to 10 s, then KILL
  local pid i
  pid=$(pidfile_pid "$1")
  if alive "$pid"; then
    log "stopping $2 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for i in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then log "$2 ignored SIGTERM, sending SIGKILL"; kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$1"
}
node_names() { local i; for i in $(seq 1 "$NODES"); do echo "gfci$i"; done; }

# ------------------------------------------------------------------ packages
missing_pkgs() {  # prints the packages of "$@" that are not installed
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
  done
}
apt_install() {  # apt_install PKG...: quiet, no recommends, no service start; apt-get update only if needed
  local rc=0 tmp_policy=0
  command -v apt-get >/dev/null || { log "no apt-get on this machine"; return 1; }
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then  # keep maintainer scripts from starting services
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && tmp_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  log "installing $* (apt-get)"
  if ! timeout "$APT_TIMEOUT" apt-get install 9>&- -y -qq --no-install-recommends "$@" >/dev/null 2>&1; then
    timeout "$APT_TIMEOUT" apt-get update -qq >/dev/null 2>&1 || true
    timeout "$APT_TIMEOUT" apt-get install 9>&- -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
  fi
  if (( tmp_policy )); then rm -f /usr/sbin/policy-rc.d; fi
  return "$rc"
}
install_pkgs() {
  local miss
  mapfile -t miss < <(missing_pkgs "${SLURM_PKGS[@]}")
  if (( ${#miss[@]} )); then apt_install "${miss[@]}" || die "could not install ${miss[*]}"; fi
  # the linter is only for the script lint test: failing to install it is not fatal
  mapfile -t miss < <(missing_pkgs "${LINT_PKGS[@]}")
  if (( ${#miss[@]} )); then apt_install "${miss[@]}" || log "warning: could not install ${miss[*]}"; fi
  local b
  for b in slurmctld slurmd munged sbatch; do
    command -v "$b" >/dev/null || die "$b not found after installing ${SLURM_PKGS[*]}"
  done
}

# ------------------------------------------------------------------ munge
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
start_munge() {
  if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    install -d -o munge -g munge -m 0700 /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
    else head -c 1024 /dev/urandom > /etc/munge/munge.key; fi
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0711 /var/lib/munge
  install -d -o munge -g munge -m 0700 /var/log/munge
  if munge_ok; then return 0; fi
  log "starting munged"
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged 9>&- || die "munged did not start (see /var/log/munge/munged.log)"
  local i; for i in $(seq 50); do munge_ok && break; sleep 0.1; done
  munge_ok || die "munged is not answering (see /var/log/munge/munged.log)"
  cp /run/munge/munged.pid "$DIR/run/munged.ours"
}

# ------------------------------------------------------------------ config
add_hosts() {  # node names must resolve (MASTER_ADDR); /etc/hosts may be a bind mount: no sed -i
  local n
  for n in "$@"; do
    getent hosts "$n" >/dev/null && continue
    if [[ -s /etc/hosts && -n $(tail -c1 /etc/hosts) ]]; then echo >> /etc/hosts; fi
    echo "127.0.0.1 $n $TAG" >> /etc/hosts
  done
}
remove_hosts() {
  local keep
  if grep -qF "$TAG" /etc/hosts 2>/dev/null; then
    keep=$(grep -vF "$TAG" /etc/hosts || true)
    printf '%s\n' "$keep" > /etc/hosts
  fi
}
write_task_prolog() {
  # Node-local temp dir per emulated node (separate hosts have separate /tmp, as they have separate /dev/shm):
  # mosaic-streaming keys its locks in $TMPDIR by shared-memory names that each node's /dev/shm reuses.
  cat > "$DIR/task_prolog.sh" <<EOF
#!/bin/sh
d=$DIR/nodetmp/\$SLURMD_NODENAME
mkdir -p "\$d" && chmod 1777 "\$d" && echo "export TMPDIR=\$d"
EOF
  chmod 755 "$DIR/task_prolog.sh"
}
write_conf() {  # sets CHANGED=1 when the config differs from the running one
  local host hw layout mem nodes n port=6818
  host=$(hostname -s)
  mapfile -t nodes < <(node_names)
  add_hosts "$host" "${nodes[@]}"
  hw=$(slurmd -C 2>/dev/null | head -n1) || true
  [[ $hw == NodeName=* ]] || die "slurmd -C failed: '$hw'"
  # this host's exact layout (CPUs, Boards, Sockets, Cores, Threads) for every emulated node
  layout=$(sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//' -e 's/ UpTime=.*//' <<<"$hw")
  mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  mem=$(( mem * 9 / 10 / NODES ))
  {
    echo "$TAG: generated, do not edit (edit the script)"
    cat <<EOF
ClusterName=gfci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=5
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
JobRequeue=1
ReturnToService=2
KillWait=$KILLWAIT
MailProg=/bin/true
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
TaskProlog=$DIR/task_prolog.sh
EOF
    for n in "${nodes[@]}"; do
      echo "NodeName=$n NodeHostname=$host NodeAddr=127.0.0.1 Port=$port $layout RealMemory=$mem State=UNKNOWN"
      port=$(( port + 1 ))
    done
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1" \
         "PreemptMode=REQUEUE GraceTime=$GRACE"
    echo "PartitionName=high Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF"
  } > "$DIR/slurm.conf.new"
  CHANGED=0
  if [[ -f $CONF ]] && ! head -n1 "$CONF" | grep -qF "$TAG"; then
    log "keeping a copy of the existing $CONF as $CONF.before-gfci"
    cp -a "$CONF" "$CONF.before-gfci"
  fi
  if [[ -f $CONF ]] && cmp -s "$CONF" "$DIR/slurm.conf.new"; then
    rm -f "$DIR/slurm.conf.new"
  else
    install -d /etc/slurm && mv "$DIR/slurm.conf.new" "$CONF" && CHANGED=1
    log "wrote $CONF ($NODES nodes: ${nodes[*]})"
  fi
}

# ------------------------------------------------------------------ daemons
# Each emulated node gets its own /dev/shm (a private mount namespace around its slurmd, inherited by the
# jobs it starts), as separate hosts have: node-local shared memory (mosaic-streaming's per-node index, for
# one) must not collide between "nodes". Without the rights for that, the nodes share the host's /dev/shm.
private_shm_ok() { unshare --mount --propagation private true 2>/dev/null; }
start_daemons() {
  local n pidf PRIVATE_SHM=0
  if private_shm_ok; then PRIVATE_SHM=1; else log "warning: no mount namespaces; emulated nodes share /dev/shm"; fi
  if (( CHANGED )); then  # a new config: restart everything, including slurmd's of another node count
    for pidf in "$DIR"/run/slurmd-*.pid; do if [[ -e $pidf ]]; then stop_pidfile "$pidf" "$(basename "$pidf" .pid)"; fi; done
    stop_pidfile "$DIR/run/slurmctld.pid" slurmctld
  fi
  if ! alive "$(pidfile_pid "$DIR/run/slurmctld.pid")"; then
    log "starting slurmctld (clean state)"
    slurmctld -c 9>&- || die "slurmctld did not start; see $DIR/log/slurmctld.log"
  fi
  for n in $(node_names); do
    mkdir -p "$DIR/spool/$n"
    alive "$(pidfile_pid "$DIR/run/slurmd-$n.pid")" && continue
    if (( PRIVATE_SHM )); then
      log "starting slurmd $n (own /dev/shm)"
      # shellcheck disable=SC2016  # $1 expands in the inner shell
      unshare --mount --propagation private bash -c 'mount -t tmpfs -o mode=1777 "gfci-shm-$1" /dev/shm && exec slurmd -N "$1"' \
        _ "$n" 9>&- || die "slurmd -N $n did not start; see $DIR/log/slurmd-$n.log"
    else
      log "starting slurmd $n"
      slurmd -N "$n" 9>&- || die "slurmd -N $n did not start; see $DIR/log/slurmd-$n.log"
    fi
  done
}
wait_idle() {
  local deadline=$(( $(date +%s) + TIMEOUT )) states resumed=0
  while :; do
    states=$(sinfo -h -N -p debug -o '%N %T' 2>/dev/null | sort -u || true)
    if [[ -n $states ]] && (( $(grep -cE ' (idle|mixed|allocated|completing)$' <<<"$states" || true) == NODES )); then
      log "cluster up: $(tr '\n' ' ' <<<"$states")"
      return 0
    fi
    if (( ! resumed )) && grep -qE ' (down|drain|drained|draining|inval)' <<<"$states"; then
      scontrol update nodename="$(node_names | paste -sd,)" state=resume 2>/dev/null || true
      resumed=1
    fi
    if (( $(date +%s) > deadline )); then
      tail -n 15 "$DIR/log/slurmctld.log" "$DIR"/log/slurmd-*.log >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

# ------------------------------------------------------------------ holders
holders_alive() {  # prints live holder pids other than $1, removing dead ones
  local f p
  for f in "$DIR"/holders/*; do
    [[ -e $f ]] || continue
    p=$(basename "$f")
    if ! alive "$p"; then rm -f "$f"; continue; fi
    [[ $p == "${1:-}" ]] || echo "$p"
  done
}

stop_all() {
  local pidf pid jobs=()
  if [[ -f $CONF ]] && head -n1 "$CONF" | grep -qF "$TAG" && alive "$(pidfile_pid "$DIR/run/slurmctld.pid")"; then
    mapfile -t jobs < <(squeue -h -o %A 2>/dev/null | sort -u || true)
    if (( ${#jobs[@]} )); then
      log "cancelling jobs ${jobs[*]}"
      scancel "${jobs[@]}" 2>/dev/null || true
      local i
      for i in $(seq 90); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 0.5; done
    fi
  fi
  for pidf in "$DIR"/run/slurmd-*.pid; do if [[ -e $pidf ]]; then stop_pidfile "$pidf" "$(basename "$pidf" .pid)"; fi; done
  stop_pidfile "$DIR/run/slurmctld.pid" slurmctld
  # slurmstepd's of this cluster (their cwd is under our spool dir) can outlive slurmd
  for pid in $(pgrep -x slurmstepd 2>/dev/null || true); do
    if [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$DIR"* ]]; then kill -9 "$pid" 2>/dev/null || true; fi
  done
  if [[ -s $DIR/run/munged.ours && $(pidfile_pid /run/munge/munged.pid) == "$(cat "$DIR/run/munged.ours")" ]]; then
    stop_pidfile /run/munge/munged.pid munged
  fi
  if [[ -f $CONF ]] && head -n1 "$CONF" | grep -qF "$TAG"; then
    rm -f "$CONF"
    if [[ -f $CONF.before-gfci ]]; then mv "$CONF.before-gfci" "$CONF"; fi
  fi
  remove_hosts
  rm -rf "$DIR"
}

cmd_up() {
  [[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts daemons)"
  mkdir -p "$DIR"/{run,log,state,spool,holders}
  install_pkgs
  start_munge
  write_task_prolog
  write_conf
  start_daemons
  if ! wait_idle; then
    log "nodes did not become idle within ${TIMEOUT}s; stopping what was started"
    stop_all
    exit 1
  fi
  touch "$DIR/holders/$PPID"
}

cmd_down() {
  local others
  if [[ ${1:-} != --force ]]; then
    rm -f "$DIR/holders/$PPID"
    others=$(holders_alive "$PPID" | paste -sd' ')
    if [[ -n $others ]]; then log "still held by pid(s) $others; leaving the cluster up"; return 0; fi
  fi
  stop_all
  log "down"
}

cmd_status() {
  local n
  echo "slurmctld: pid $(pidfile_pid "$DIR/run/slurmctld.pid")"
  for n in $(node_names); do echo "slurmd $n: pid $(pidfile_pid "$DIR/run/slurmd-$n.pid")"; done
  echo "munge: $(munge_ok && echo ok || echo down)"
  echo "holders: $(holders_alive "" | paste -sd' ')"
  sinfo 2>&1 || true
  squeue 2>&1 || true
}

main() {
  local cmd=${1:-}
  [[ $cmd =~ ^(up|down|status)$ ]] || { echo "usage: $0 up | down [--force] | status" >&2; exit 2; }
  [[ $cmd == status ]] && { cmd_status; return; }
  mkdir -p "$(dirname "$LOCK")"
  exec 9>"$LOCK"
  flock -w 900 9 || die "another slurm_local.sh is still running (lock $LOCK)"
  shift
  "cmd_$cmd" "$@"
}

main "$@"
