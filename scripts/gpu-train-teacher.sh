#!/usr/bin/env bash
# Trains the teacher on a CUDA machine that has python3 + a CUDA PyTorch wheel but not Debian's
# -dev packages (the project's GPU machine): builds `arcflow` against the wheel's LibTorch with the
# header-only dependencies, libpng/zlib and the Fashion-MNIST files taken from $DEPS (see
# scripts/cuda-check.sh), then runs train-teacher until the time budget is spent.
# Usage: scripts/gpu-train-teacher.sh BUDGET_SECONDS [DEPS_DIR] [OUT_DIR] [extra train-teacher flags]
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
BUDGET=${1:?budget in seconds}
DEPS=$(realpath "${2:-.devdeps}")
OUT=${3:-${OUT:-gpu-out}}
shift 3 || shift $#
source scripts/cuda-prelude.sh
cuda_build arcflow
left=$(( BUDGET - ($(date +%s) - t0) - 45 ))
minutes=$(python3 -c "print(max(0.5, $left / 60))")
echo "training for $minutes min"
rc=0
./build-cuda/arcflow train-teacher --config configs/teacher.toml --device cuda -o "$OUT/teacher" \
  --data-dir "$DEPS/fashion-mnist" --time-limit "$minutes" "$@" > "$OUT/train.log" 2>&1 || rc=$?
tr '\r' '\n' < "$OUT/train.log" | grep -v "^train-teacher" | tail -8
tr '\r' '\n' < "$OUT/train.log" | grep "^train-teacher" | tail -1
echo "train rc=$rc"
# Files come back in pieces of at most 16 MiB: split the weights, drop the (large) checkpoint.
split -b 15M -d "$OUT/teacher/teacher.safetensors" "$OUT/teacher.safetensors.part"
mv "$OUT/teacher/train.jsonl" "$OUT/train.jsonl"
rm -rf "$OUT/teacher"
ls -la "$OUT"
