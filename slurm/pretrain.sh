#!/usr/bin/env bash
# slurm/pretrain.sh - train any recipe on a Slurm cluster; preemption-safe (signal -> checkpoint -> requeue).
#
# Owner: the Slurm launch. `slurm/pretrain_1p5b.sh` is this script with the 1.5B defaults.
#
#   RECIPE=recipes/goldfinch_L12D768_ctx1024_minipile_8xh100.yaml sbatch slurm/pretrain.sh [key=value ...]
#   RECIPE=... RUN_DIR=runs/my-run sbatch --nodes=4 --time=2-00:00:00 slurm/pretrain.sh optim.lr=2e-4
#
# Every #SBATCH default below can be overridden on the sbatch command line (sbatch flags win over
# #SBATCH lines). Environment (exported at submit time; sbatch passes the environment on):
#   RECIPE        recipe YAML (required here; pretrain_1p5b.sh sets its own)
#   RUN_DIR       run directory (default runs/<recipe name>). A restarted or resubmitted job with the same
#                 RUN_DIR resumes from its newest complete checkpoint (the trainer does this by itself).
#   GF_OVERRIDES  extra `key=value` config overrides, space separated (same as arguments after the script)
#   GF_VENV       virtualenv to activate (default <repo>/.venv, if it exists)
#   GF_REPO       the gf-train checkout (default: found from the submitted script's path)
#   GF_TRAIN_CMD  the training program (default `python -m gf_train train`); the tests put a stand-in here
#   GF_MAX_RESTARTS  stop requeueing after this many restarts (default 100)
#   GF_SRUN_WAIT  seconds the other ranks get after the first one exits before srun kills them (600)
#   GF_MASTER_ADDR / MASTER_PORT  rendezvous host/port (default: first node of the job, 20000 + jobid % 20000)
#
# Launch design: one srun task per GPU (per rank), with Slurm's task variables mapped to RANK, WORLD_SIZE,
# LOCAL_RANK, ... by the trainer itself (gf_train.distributed.info), and MASTER_ADDR = the head node (first
# host of the allocation). Slurm is the launcher; there is no torchrun inside the job. Why: srun forwards
# signals to every rank and returns the ranks' exit code, so "requeue me" (75) reaches this shell;
# torchrun's agent dies on SIGUSR1 and turns any failed worker into exit 1. One task per GPU also makes `--nodes`/`--ntasks-per-node`
# overrides (e.g. 1 node x 2 CPU ranks in CI) just work.
#
# Preemption and time limits (the requeue protocol):
#   1. Slurm sends this batch shell SIGUSR1: `--signal=B:USR1@300` (5 min before the time limit), a
#      preemption (clusters with preempt_send_user_signal), or `scancel --signal=USR1 --batch JOBID`.
#   2. The trap forwards it to the job step (kill -USR1 <srun>, srun passes it to every rank).
#   3. The trainer finishes the current step, writes a complete checkpoint and exits with 75.
#   4. On 75 this shell runs `scontrol requeue $SLURM_JOB_ID`: the same job id goes back to the queue,
#      keeps its output file (`--open-mode=append`) and, when it runs again (SLURM_RESTART_COUNT=1, 2, ...),
#      the trainer resumes from the newest complete checkpoint in RUN_DIR.
#   SIGTERM (scancel, or the end of a preemption grace time) is forwarded the same way.
#
# Logs: Slurm's own output file (default slurm-<name>-<jobid>.out in the submit directory) and, per job,
# RUN_DIR/logs/slurm-<jobid>.log (everything this script and the ranks print, all restarts appended,
# rank-labelled).
#
#SBATCH --job-name=gf-pretrain
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

say() { printf '[pretrain %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { say "ERROR: $*" >&2; exit 2; }

# ---- signals first (a USR1 must never kill this shell): forward to the job step once it exists ----------
SRUN_PID=""
PENDING=""
forward() {
  local sig=$1
  say "got SIG$sig: asking the ranks to checkpoint and exit (75 = requeue me)"
  if [[ -n $SRUN_PID ]]; then kill -s "$sig" "$SRUN_PID" 2>/dev/null || true; else PENDING=$sig; fi
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM

# ---- where the checkout is: sbatch runs a copy of this file from Slurm's spool directory ---------------
gf_repo() {
  local cmd d
  if [[ -n ${GF_REPO:-} ]]; then echo "$GF_REPO"; return; fi
  if [[ -n ${SLURM_JOB_ID:-} ]]; then  # the path that was submitted
    cmd=$(scontrol show job -o "$SLURM_JOB_ID" 2>/dev/null | grep -o 'Command=[^ ]*' | cut -d= -f2- || true)
    if [[ -n $cmd && $cmd != /* ]]; then cmd=${SLURM_SUBMIT_DIR:-.}/$cmd; fi
    if [[ -n $cmd ]]; then d=$(cd "$(dirname "$cmd")/.." 2>/dev/null && pwd) || d=""
      if [[ -f $d/slurm/pretrain.sh ]]; then echo "$d"; return; fi; fi
  fi
  for d in "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" "${SLURM_SUBMIT_DIR:-}" "$PWD"; do
    if [[ -n $d && -f $d/slurm/pretrain.sh ]]; then echo "$d"; return; fi
  done
  return 1
}
REPO=$(gf_repo) || die "cannot find the gf-train checkout; submit from it or set GF_REPO=/path/to/gf-train"
export GF_REPO=$REPO
cd "$REPO"
# shellcheck source=slurm/env.sh
source "$REPO/slurm/env.sh"
VENV=${GF_VENV:-$REPO/.venv}
if [[ -f $VENV/bin/activate ]]; then
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
fi

[[ -n ${SLURM_JOB_ID:-} ]] || die "run this with sbatch (for a machine without Slurm use slurm/local.sh)"
RECIPE=${RECIPE:?set RECIPE=recipes/<name>.yaml (see recipes/README.md)}
[[ -f $RECIPE ]] || die "recipe '$RECIPE' not found (relative paths are from $REPO)"
RUN_DIR=${RUN_DIR:-runs/$(basename "$RECIPE" .yaml)}
RESTARTS=${SLURM_RESTART_COUNT:-0}  # unset on the first run
MAX_RESTARTS=${GF_MAX_RESTARTS:-100}
mkdir -p "$RUN_DIR/logs"
LOG=$RUN_DIR/logs/slurm-$SLURM_JOB_ID.log
exec > >(tee -a "$LOG") 2>&1

# no progress bar in batch logs (later overrides win: GF_OVERRIDES / arguments may turn it back on)
read -ra OVERRIDES <<< "log.progress_bar=false ${GF_OVERRIDES:-}"
OVERRIDES+=("$@")
read -ra TRAIN <<< "${GF_TRAIN_CMD:-python -m gf_train train}"
TRAIN+=(--config "$RECIPE" --run-dir "$RUN_DIR" "${OVERRIDES[@]}")

# ---- head node: rank 0 runs on the first host of the allocation and serves the rendezvous store --------
MASTER_ADDR=${GF_MASTER_ADDR:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)}
MASTER_PORT=${MASTER_PORT:-$(( 20000 + SLURM_JOB_ID % 20000 ))}
export MASTER_ADDR MASTER_PORT
say "job $SLURM_JOB_ID restart $RESTARTS on $SLURM_JOB_NODELIST ($SLURM_NNODES nodes, $SLURM_NTASKS ranks)" \
    "SLURM_RESTART_COUNT=$RESTARTS"
say "recipe $RECIPE, run dir $RUN_DIR, head $MASTER_ADDR:$MASTER_PORT, repo $REPO"
say "command: ${TRAIN[*]}"

if [[ -n $PENDING ]]; then  # signalled during setup: nothing to checkpoint yet, go straight back to the queue
  say "SIG$PENDING before training started; requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID" || say "scontrol requeue failed (already requeued by a preemption?)"
  exit 0
fi
srun --ntasks="$SLURM_NTASKS" --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" --kill-on-bad-exit=0 \
     --wait="${GF_SRUN_WAIT:-600}" --label --unbuffered \
     bash "$REPO/slurm/task.sh" "${TRAIN[@]}" &
SRUN_PID=$!
# `wait` returns early (>128) when a trapped signal arrives; keep waiting until srun itself is gone
while kill -0 "$SRUN_PID" 2>/dev/null; do wait "$SRUN_PID" || true; done
rc=0
wait "$SRUN_PID" || rc=$?

case $rc in
  0) say "training finished (exit 0)" ;;
  75)
    if (( RESTARTS >= MAX_RESTARTS )); then
      say "ranks asked to be requeued, but this job already restarted $RESTARTS times (GF_MAX_RESTARTS)"
      exit 75
    fi
    say "checkpoint written; requeueing job $SLURM_JOB_ID (restart $(( RESTARTS + 1 )))"
    scontrol requeue "$SLURM_JOB_ID" || say "scontrol requeue failed (already requeued by a preemption?)"
    ;;
  *) say "training failed with exit code $rc"; exit "$rc" ;;
esac
