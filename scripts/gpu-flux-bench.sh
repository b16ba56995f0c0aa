#!/usr/bin/env bash
# Issue "FLUX.1 teachers from the diffusers layout", on a GPU machine: builds arcflow against the
# LibTorch inside a CUDA PyTorch wheel (as scripts/cuda-check.sh: header-only dependencies from
# $DEPS), runs the FLUX tests there, then times a full-size FLUX.1-dev-shaped transformer with
# random BF16 weights at 512^2 and 1024^2 (4,096 image + 512 text tokens): ms per NFE, peak GB,
# teacher-28 / teacher-50 / 2-step seconds per image. One script, sized for a 15-minute device slot.
# Usage: scripts/gpu-flux-bench.sh [DEPS_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=$(realpath "${1:-.devdeps}")
OUT=${2:-${OUT:-gpu-flux-out}}
mkdir -p "$OUT"
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
export LD_LIBRARY_PATH="$DEPS/lib:${LD_LIBRARY_PATH:-}"
start=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$DEPS" > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
cmake --build build-cuda --parallel "$(nproc)" --target arcflow arcflow_tests > "$OUT/build.log" 2>&1 ||
  { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
rc=0; ./build-cuda/arcflow_tests --gtest_filter='Flux*:Vae*' --gtest_brief=1 > "$OUT/tests.log" 2>&1 || rc=$?
echo "FLUX tests rc=$rc: $(tail -3 "$OUT/tests.log" | tr '\n' ' ')"
./build-cuda/arcflow --device cuda bench --random-weights --config flux-dev --dtype bfloat16 \
  --resolutions 512,1024 --teacher-steps 28,50 --repeats 3 -o "$OUT/bench-flux-dev.json" 2>&1 | tee "$OUT/bench.log"
