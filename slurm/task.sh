#!/usr/bin/env bash
# slurm/task.sh - one training rank inside a Slurm job step: sets its CPU threads, then execs the command
# it is given.
#
# Owner: the Slurm launch. Started by slurm/pretrain.sh as `srun ... bash slurm/task.sh CMD ARGS...`,
# one task per GPU (one per CPU rank for gloo runs). Design: no torchrun in Slurm jobs; Slurm is the
# launcher. srun forwards our USR1/TERM to every rank directly, and the "requeue me" exit code 75
# reaches the batch shell unchanged (torchrun would kill its agent on USR1 and report a failed child
# as exit 1).
# The rank variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE) are NOT written here: the trainer
# derives them from Slurm's step variables itself (`gf_train.distributed.info`, the one parser and writer
# of the rank environment, heterogeneous allocations like "4(x2),3" included).
set -euo pipefail

: "${SLURM_PROCID:?slurm/task.sh runs only inside srun}" "${SLURM_STEP_NUM_TASKS:?}"
# ... and no stale value exported in the submitting shell may take precedence over Slurm's
unset RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE LOCAL_SIZE GROUP_RANK ROLE_RANK NODE_RANK CROSS_RANK CROSS_SIZE
# MASTER_ADDR/MASTER_PORT come from pretrain.sh (the head node, a port per job)
: "${MASTER_ADDR:?MASTER_ADDR is not set (slurm/pretrain.sh sets it)}" "${MASTER_PORT:?}"

# CPU threads per rank: what Slurm gave the task
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
echo "[task] rank $SLURM_PROCID/$SLURM_STEP_NUM_TASKS local ${SLURM_LOCALID:-0} on node ${SLURMD_NODENAME:-?}" \
     "(host $(hostname -s)), rendezvous $MASTER_ADDR:$MASTER_PORT" >&2
exec "$@"
