#!/usr/bin/env bash
# Build .gpu_wheels/: the Python packages gf-train needs that a bare GPU image (torch + triton, Python 3.12,
# no network) lacks, as wheels for CPython 3.12 on x86_64 Linux. Run here, where the registries are
# reachable; then carry .gpu_wheels to the GPU machine and run scripts/gpu/session.sh there.
#   bash scripts/gpu/wheels.sh [PYVER]      (PYVER: the GPU machine's Python, default 3.12)
set -euo pipefail
cd "$(dirname "$0")/../.."
PYVER=${1:-3.12}
ABI="cp${PYVER/./}"
PIP=${PIP:-.venv/bin/pip}
OUT=.gpu_wheels
rm -rf "$OUT" && mkdir -p "$OUT"
quiet() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
# binary or pure wheels, no dependencies: the image already holds numpy, pyyaml, tqdm, xxhash, psutil,
# py-cpuinfo, ninja, msgpack, einops, safetensors, tokenizers, transformers, pyarrow, pillow
quiet "$PIP" download -q -d "$OUT" --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --abi "$ABI" --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any \
  omegaconf==2.4.0 pyrwkv-tokenizer==0.9.1 orjson "zstd<2" python-snappy==0.7.3 cramjam brotli catalogue==2.0.10 \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection hjson mosaicml-streaming==0.13.0 \
  zstandard
# DeepSpeed ships an sdist; with no ops built it is a pure-Python wheel
DS_BUILD_OPS=0 quiet "$PIP" wheel -q --no-deps -w "$OUT" deepspeed==0.19.8
ls "$OUT" && du -sh "$OUT"
