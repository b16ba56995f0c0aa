#!/usr/bin/env bash
# Issue "FLUX.1 teachers from the diffusers layout", on a GPU machine: builds arcflow against the
# LibTorch inside a CUDA PyTorch wheel (as scripts/cuda-check.sh: header-only dependencies from
# $DEPS), runs the FLUX tests there, then times a full-size FLUX.1-dev-shaped transformer with
# random BF16 weights at 512^2 and 1024^2 (4,096 image + 512 text tokens): ms per NFE, peak GB,
# teacher-28 / teacher-50 / 2-step seconds per image; then ArcFlow distillation at 1024^2 (batch 1, LoRA
# rank 256, the reference's recipe): seconds per iteration and peak GB with and without per-block
# activation checkpointing. One script, sized for a 15-minute device slot.
# Usage: scripts/gpu-flux-bench.sh [DEPS_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=$(realpath "${1:-.devdeps}")
OUT=${2:-${OUT:-gpu-flux-out}}
source scripts/cuda-prelude.sh
cuda_build arcflow arcflow_tests
rc=0; ./build-cuda/arcflow_tests --gtest_filter='Flux*:Vae*' --gtest_brief=1 > "$OUT/tests.log" 2>&1 || rc=$?
echo "FLUX tests rc=$rc: $(tail -3 "$OUT/tests.log" | tr '\n' ' ')"
./build-cuda/arcflow --device cuda bench --random-weights --config flux-dev --dtype bfloat16 \
  --resolutions 512,1024 --teacher-steps 28,50 --repeats 3 -o "$OUT/bench-flux-dev.json" 2>&1 | tee "$OUT/bench.log"
./build-cuda/arcflow --device cuda bench --random-weights --config flux-dev --dtype bfloat16 \
  --resolutions 1024 --teacher-steps 1 --repeats 1 --distill-iters 2 --lora-rank 256 \
  -o "$OUT/bench-flux-dev-distill.json" 2>&1 | tee "$OUT/bench-distill.log"
