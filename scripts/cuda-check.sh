#!/usr/bin/env bash
# Builds arcflow against the LibTorch inside a CUDA PyTorch wheel and runs it with --device cuda.
# For a GPU machine that has python3 + torch but not Debian's -dev packages: the header-only
# dependencies and libpng/zlib are taken from $DEPS (include/ and lib/), e.g. a copy of this
# machine's /usr/include/{nlohmann,CLI,png*.h,zlib.h} and the matching libraries; GoogleTest from
# the GPU machine itself (mixing its library with other headers crashes).
# Usage: scripts/cuda-check.sh [DEPS_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=$(realpath "${1:-.devdeps}")
OUT=${2:-${OUT:-cuda-check-out}}
mkdir -p "$OUT"
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
export LD_LIBRARY_PATH="$DEPS/lib:${LD_LIBRARY_PATH:-}"
start=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$DEPS" > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
cmake --build build-cuda --parallel "$(nproc)" > "$OUT/build.log" 2>&1 || { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
rc=0; ( time ./build-cuda/arcflow toy --device cuda -o "$OUT/toy-cuda" ) > "$OUT/toy-cuda.log" 2>&1 || rc=$?
echo "toy --device cuda rc=$rc"; tr '\r' '\n' < "$OUT/toy-cuda.log" | grep -E "100%|method|-[0-9]+ |real" | cut -c1-120
rc=0; ./build-cuda/arcflow_tests --gtest_brief=1 > "$OUT/tests.log" 2>&1 || rc=$?
echo "unit tests rc=$rc: $(tail -4 "$OUT/tests.log" | tr '\n' ' ')"
