#!/usr/bin/env bash
# slurm/tokenize.sh - data preparation as a CPU job: data_prep/tokenize.py on one node, or an array job
# with one output dataset per slice of the input files.
#
# Owner: the Slurm launch (the tokenizer itself is gf_train.data.tokenize).
#
#   INPUT=corpus/ OUT=data/mycorpus sbatch slurm/tokenize.sh                  # one dataset, all inputs
#   INPUT="a/*.jsonl.zst b/" OUT=data/big sbatch --array=0-15 slurm/tokenize.sh  # 16 datasets data/big/part-00000..
#   INPUT=... OUT=... SEQ_LEN=4096 TOKENIZER=rwkv_world sbatch slurm/tokenize.sh --skip-bad-records
#
# Environment: INPUT (files, folders or globs, space separated; required), OUT (required), SEQ_LEN (2048),
# TOKENIZER (rwkv_world), TEXT_FIELD (text), VAL_FRACTION (0.001; 0 in an array job's parts other than 0),
# WORKERS (SLURM_CPUS_PER_TASK), GF_VENV, GF_REPO. Arguments after the script go to tokenize.py
# (e.g. --overwrite, --skip-bad-records).
# Array jobs: the input FILES (folders expanded, sorted) are dealt round-robin to the array tasks; task k
# writes OUT/part-0000k/{train,val}. List the parts as separate streams under `data.train` of a recipe
# (mosaicml-streaming mixes them) or tokenize in one job when the corpus is small.
#
#SBATCH --job-name=gf-tokenize
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=32
#SBATCH --mem=64G
#SBATCH --time=08:00:00
#SBATCH --output=slurm-%x-%A_%a.out
set -euo pipefail
shopt -s nullglob

if [[ -z ${GF_REPO:-} ]]; then
  cmd=$(scontrol show job -o "${SLURM_JOB_ID:-none}" 2>/dev/null | grep -o 'Command=[^ ]*' | cut -d= -f2- || true)
  if [[ -n $cmd && $cmd != /* ]]; then cmd=${SLURM_SUBMIT_DIR:-.}/$cmd; fi
  for d in "$(dirname "${cmd:-/nonexistent/x}")/.." "$(dirname "${BASH_SOURCE[0]}")/.." "${SLURM_SUBMIT_DIR:-.}"; do
    if [[ -f $d/data_prep/tokenize.py ]]; then GF_REPO=$(cd "$d" && pwd); break; fi
  done
fi
[[ -f ${GF_REPO:-}/data_prep/tokenize.py ]] || { echo "cannot find the gf-train checkout; set GF_REPO" >&2; exit 2; }
VENV=${GF_VENV:-$GF_REPO/.venv}
if [[ -f $VENV/bin/activate ]]; then
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
fi

: "${INPUT:?set INPUT=<files, folders or globs>}" "${OUT:?set OUT=<output folder>}"
read -ra patterns <<< "$INPUT"
inputs=()
for p in "${patterns[@]}"; do
  # shellcheck disable=SC2206  # globs in INPUT are meant to expand here
  matches=($p)
  if (( ${#matches[@]} == 0 )); then echo "INPUT '$p' matches nothing" >&2; exit 2; fi
  inputs+=("${matches[@]}")
done
out=$OUT
val=${VAL_FRACTION:-0.001}
if [[ -n ${SLURM_ARRAY_TASK_ID:-} ]]; then
  k=$SLURM_ARRAY_TASK_ID n=${SLURM_ARRAY_TASK_COUNT:-1}
  k=$(( k - ${SLURM_ARRAY_TASK_MIN:-0} ))
  mapfile -t files < <(for p in "${inputs[@]}"; do
    if [[ -d $p ]]; then find "$p" -type f; else echo "$p"; fi
  done | sort)
  inputs=()
  for (( i = k; i < ${#files[@]}; i += n )); do inputs+=("${files[$i]}"); done
  if (( ${#inputs[@]} == 0 )); then echo "array task $k of $n: no input files left for this slice"; exit 0; fi
  out=$OUT/part-$(printf %05d "$k")
  if (( k != 0 )); then val=0; fi
fi
args=()
for p in "${inputs[@]}"; do args+=(--input "$p"); done
echo "[tokenize] ${#inputs[@]} input(s) -> $out (job ${SLURM_JOB_ID:-local})"
exec python "$GF_REPO/data_prep/tokenize.py" "${args[@]}" --out "$out" \
  --tokenizer "${TOKENIZER:-rwkv_world}" --seq-len "${SEQ_LEN:-2048}" --text-field "${TEXT_FIELD:-text}" \
  --val-fraction "$val" --workers "${WORKERS:-${SLURM_CPUS_PER_TASK:-1}}" "$@"
