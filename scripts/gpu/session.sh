#!/usr/bin/env bash
# Everything gf-train needs a GPU for, in one command on a lent GPU machine (see docs/benchmarks.md):
#   bash scripts/gpu/session.sh [kernels] [train] [model]     (default: all three)
# Needs .gpu_wheels/ (scripts/gpu/wheels.sh, carried along). Writes logs and a summary under $OUT
# (default ./gpu_out): env.txt, gpu_tests.txt, torch_tests.txt, bench_wkv6.txt, bench_train.txt, bench_model.txt.
# Each part is independent and a failing part does not stop the others; the exit status is that of the
# last failing part (0 when all passed).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PARTS=${*:-kernels train model}
PY=python3
if [ -d .gpu_wheels ] && ! $PY -c "import omegaconf, deepspeed, streaming" 2>/dev/null; then
  # a venv over the image's packages (torch, triton, numpy ...), plus our wheels and gf-train itself
  $PY -m venv --system-site-packages /tmp/gf-venv && PY=/tmp/gf-venv/bin/python
  $PY -m pip install -q --no-index --no-deps .gpu_wheels/*.whl
  $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} DS_BUILD_OPS=0 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
{
  date -u; nvidia-smi; $PY - <<'PY'
import platform, torch, triton
print("python", platform.python_version(), "torch", torch.__version__, "triton", triton.__version__,
      "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
for m in ("deepspeed", "flash_attn", "fla", "streaming"):
    try:
        mod = __import__(m)
        print(m, getattr(mod, "__version__", "?"))
    except Exception as e:  # noqa: BLE001
        print(m, "missing:", type(e).__name__, e)
PY
} > "$OUT/env.txt" 2>&1
rc=0
run() {  # run NAME CMD...: tee into $OUT/NAME.txt, remember a failure
  local name=$1; shift
  echo "== $name: $*" | tee "$OUT/$name.txt"
  "$@" 2>&1 | tee -a "$OUT/$name.txt"
  local s=${PIPESTATUS[0]}
  echo "== $name exit $s" | tee -a "$OUT/$name.txt"
  return "$s"
}
for part in $PARTS; do
  case $part in
    kernels)
      run gpu_tests $PY -m pytest -q -m gpu tests/kernels -p no:cacheprovider --timeout=600 || rc=$?
      # the CPU torch-backend tests too: this machine's torch differs from CI's (torch 2.11 mis-traced a
      # no-op .to() under torch.compile; tests/kernels/test_wkv6_torch.py caught it). Not the interpreter
      # tests: triton 3.6's interpreter breaks on numpy >= 2.3, an upstream issue outside our code.
      run torch_tests $PY -m pytest -q tests/kernels/test_wkv6_torch.py tests/kernels/test_attention.py \
        -p no:cacheprovider --timeout=600 || rc=$?
      run bench_wkv6 $PY benchmarks/bench_wkv6.py --no-cpu || rc=$? ;;
    train)  # GoldFinch at the 1.5B width (L24 D2048), ctx 4096, one GPU, bf16: the first setting that fits
      ok=1
      for try in "24 4 false" "24 4 true" "24 2 true" "12 4 false" "12 4 true"; do
        set -- $try
        if run bench_train $PY benchmarks/bench_train.py \
            --config recipes/goldfinch_L24D2048_ctx4096_minipile_8xh100.yaml --steps 8 --warmup 3 --no-bare \
            model.n_layer=$1 dist.global_batch=$2 dist.micro_batch=$2 model.grad_cp=$3 dist.zero_stage=1 \
            dist.precision=bf16; then ok=0; break; fi
        cat "$OUT/bench_train.txt" >> "$OUT/bench_train_failed.txt"  # (at most 8 files come back)
      done
      [ $ok = 0 ] || rc=1 ;;
    model)
      run bench_model $PY benchmarks/bench_model.py --device cuda || rc=$? ;;
    *) echo "unknown part $part (kernels, train, model)"; rc=2 ;;
  esac
done
exit $rc
