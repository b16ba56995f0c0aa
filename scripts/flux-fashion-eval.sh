#!/bin/bash
# Issue "ArcFlow on FLUX.1": the table of the FLUX-architecture Fashion-MNIST teacher
# (runs/flux-fashion/teacher) and its three students (runs/flux-fashion/{linear,gmflow,arcflow}-2, from
# scripts/flux-fashion-distill.sh): the teacher's 50 guided Euler steps at shift 3.2 (the reference),
# at shift 1 too, its 2-step guided Euler, and each student at 1, 2 and 4 NFE, on N samples from one
# noise (seed 0, classes cycling), guidance 4; the training curves (every snapshot) on the first
# N/5 samples. Output: runs/eval-flux-fashion/{eval.json,index.html}. Teacher rows are kept in
# runs/eval-flux-fashion/cache as they are made, so a stopped run continues when run again.
# Usage: [N=1000] [ARCFLOW=build/arcflow] scripts/flux-fashion-eval.sh [MINUTES] [THREADS]
set -u
cd "$(dirname "$0")/.."
MINUTES=${1:-0}
THREADS=${2:-2}
N=${N:-1000}
A=${ARCFLOW:-build/arcflow}
OUT=runs/eval-flux-fashion
R=runs/flux-fashion
args=(-t "$THREADS" eval --teacher "$R/teacher/teacher.safetensors" --shift 3.2 --cfg-scale 4 --teacher-steps 2
      --reference-shifts 1 -n "$N" -s 0 --gen-batch 64 --student-nfe 1,2,4 --curve-samples $((N / 5))
      --cache "$OUT/cache" --time-limit "$MINUTES" -o "$OUT")
for name in linear-2 gmflow-2 arcflow-2; do
  [ -f "$R/$name/adapter.safetensors" ] || continue
  args+=(--adapter "$name=$R/$name/adapter.safetensors")
  [ -d "$R/$name/snapshots" ] && args+=(--curve "$name=$R/$name")
done
exec "$A" "${args[@]}"
