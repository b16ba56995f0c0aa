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
source scripts/cuda-prelude.sh
cuda_build
rc=0; ( time ./build-cuda/arcflow toy --device cuda -o "$OUT/toy-cuda" ) > "$OUT/toy-cuda.log" 2>&1 || rc=$?
echo "toy --device cuda rc=$rc"; tr '\r' '\n' < "$OUT/toy-cuda.log" | grep -E "100%|method|-[0-9]+ |real" | cut -c1-120
rc=0; ./build-cuda/arcflow_tests --gtest_brief=1 > "$OUT/tests.log" 2>&1 || rc=$?
echo "unit tests rc=$rc: $(tail -4 "$OUT/tests.log" | tr '\n' ' ')"
# Data parallel on the GPU: 2 ranks over Gloo (staged through the CPU) on however many GPUs there
# are; over NCCL when there are at least 2 GPUs (NCCL refuses two ranks on one GPU).
d="$OUT/dp"; rm -rf "$d"; mkdir -p "$d"
./build-cuda/arcflow train-teacher --device cuda --width 32 --depth 1 --heads 2 --iters 4 --batch 8 \
  --limit-train 64 -q -o "$d/t" > "$d/teacher.log" 2>&1
common="--teacher $d/t/teacher.safetensors --total-substeps 8 --lora-dropout 0 --dist-timeout 60 -q --device cuda"
rc=0; ./build-cuda/arcflow launch -n 2 --master-port 29611 -- distill $common --batch 2 --iters 4 \
  -o "$d/gloo" > "$d/gloo.log" 2>&1 || rc=$?
echo "launch -n 2 distill --device cuda --dist-backend gloo rc=$rc: $(tail -n 2 "$d/gloo.log" | tr '\n' ' ')"
gpus=$(python3 -c 'import torch; print(torch.cuda.device_count())')
nccl=$(grep -c "ARCFLOW_HAVE_NCCL" build-cuda/build.ninja || true)
echo "GPUs: $gpus; NCCL compiled in: $([ "$nccl" -gt 0 ] && echo yes || echo no)"
if [ "$gpus" -ge 2 ] && [ "$nccl" -gt 0 ]; then
  rc=0; ./build-cuda/arcflow launch -n 2 --master-port 29621 -- distill $common --dist-backend nccl --batch 2 \
    --iters 4 -o "$d/nccl" > "$d/nccl.log" 2>&1 || rc=$?
  echo "launch -n 2 distill --dist-backend nccl rc=$rc: $(tail -n 2 "$d/nccl.log" | tr '\n' ' ')"
  a=$(grep -o '"loss":[^,]*' "$d/gloo/train.jsonl" || true); b=$(grep -o '"loss":[^,]*' "$d/nccl/train.jsonl" || true)
  echo "gloo and nccl losses $([ "$a" = "$b" ] && echo agree || echo differ): $(echo "$b" | tr '\n' ' ')"
fi
