#!/usr/bin/env bash
# slurm/task.sh - one training rank inside a Slurm job step: maps Slurm's task variables to the
# torch.distributed ones, then execs the command it is given.
#
# Owner: the Slurm launch. Started by slurm/pretrain.sh as `srun ... bash slurm/task.sh CMD ARGS...`,
# one task per GPU (one per CPU rank for gloo runs). Design: no torchrun in Slurm jobs; Slurm is the
# launcher. srun forwards our USR1/TERM to every rank directly, and the "requeue me" exit code 75
# reaches the batch shell unchanged (torchrun would kill its agent on USR1 and report a failed child
# as exit 1).
set -euo pipefail

# rank/world from Slurm; MASTER_ADDR/MASTER_PORT come from pretrain.sh (the head node, a port per job)
export RANK=${SLURM_PROCID:?slurm/task.sh runs only inside srun}
export WORLD_SIZE=${SLURM_NTASKS:?}
export LOCAL_RANK=${SLURM_LOCALID:?}
export GROUP_RANK=${SLURM_NODEID:-0}
# ranks on this node: SLURM_STEP_TASKS_PER_NODE is "8" or "8(x2),4"; pick this node's entry
counts=()
IFS=, read -ra spec <<< "${SLURM_STEP_TASKS_PER_NODE:-${SLURM_TASKS_PER_NODE:-1}}"
for s in "${spec[@]}"; do
  n=${s%%(*}; k=1
  if [[ $s == *"(x"* ]]; then k=${s#*(x}; k=${k%)}; fi
  for (( i = 0; i < k; i++ )); do counts+=("$n"); done
done
export LOCAL_WORLD_SIZE=${counts[$GROUP_RANK]:-1}
: "${MASTER_ADDR:?MASTER_ADDR is not set (slurm/pretrain.sh sets it)}" "${MASTER_PORT:?}"

# CPU threads per rank: what Slurm gave the task
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
echo "[task] rank $RANK/$WORLD_SIZE local $LOCAL_RANK/$LOCAL_WORLD_SIZE on node ${SLURMD_NODENAME:-?}" \
     "(host $(hostname -s)), rendezvous $MASTER_ADDR:$MASTER_PORT" >&2
exec "$@"
