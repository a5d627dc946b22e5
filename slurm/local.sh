#!/usr/bin/env bash
# slurm/local.sh - the single-node twin of slurm/pretrain.sh, for machines without Slurm: torchrun on the
# local GPUs (or CPU ranks with gloo), same recipe, run dir, overrides, env knobs and auto-resume.
#
# Owner: the Slurm launch.
#
#   bash slurm/local.sh recipes/debug_cpu.yaml                          # 2 CPU ranks (no GPU), runs/debug_cpu
#   NPROC=8 RUN_DIR=runs/gf1p5b bash slurm/local.sh recipes/goldfinch_L24D2048_ctx2048_minipile_8xh100.yaml
#   bash slurm/local.sh recipes/debug_cpu.yaml schedule.max_steps=10   # trailing key=value overrides
#
# Environment: NPROC (ranks; default: the number of visible GPUs, else 2), RUN_DIR (runs/<recipe name>),
# GF_OVERRIDES, GF_VENV, MASTER_PORT (29500), and the knobs of slurm/env.sh.
# Stopping: Ctrl-C or SIGTERM makes the trainer checkpoint at the next step and exit 75; run the same
# command again to resume from the newest complete checkpoint (torchrun reports the 75 as a failed child).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
# shellcheck source=slurm/env.sh
source "$REPO/slurm/env.sh"
VENV=${GF_VENV:-$REPO/.venv}
if [[ -f $VENV/bin/activate ]]; then
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
fi

RECIPE=${1:?usage: bash slurm/local.sh RECIPE.yaml [key=value ...]}
shift
[[ -f $RECIPE ]] || { echo "recipe '$RECIPE' not found (relative paths are from $REPO)" >&2; exit 2; }
RUN_DIR=${RUN_DIR:-runs/$(basename "$RECIPE" .yaml)}
if [[ -z ${NPROC:-} ]]; then
  NPROC=$(python -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
  if (( NPROC == 0 )); then NPROC=2; fi
fi
read -ra OVERRIDES <<< "${GF_OVERRIDES:-}"
mkdir -p "$RUN_DIR/logs"
echo "[local] $NPROC ranks, recipe $RECIPE, run dir $RUN_DIR" >&2
torchrun --standalone --nnodes=1 --nproc-per-node="$NPROC" --master-port="${MASTER_PORT:-29500}" \
  -m gf_train train --config "$RECIPE" --run-dir "$RUN_DIR" "${OVERRIDES[@]}" "$@" \
  2>&1 | tee -a "$RUN_DIR/logs/local-$(date +%Y%m%d-%H%M%S).log"
exit "${PIPESTATUS[0]}"
