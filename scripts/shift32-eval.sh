#!/bin/bash
# Issue "The paper's claim at the reference's settings": the table of the three shift-3.2 students
# (runs/shift3.2/{linear,gmflow,arcflow}-2, from scripts/shift32-distill.sh) on 5,000 samples from one
# noise: the teacher's 50 guided Euler steps at shift 3.2 (the reference) and, with SHIFT1=1, at shift 1;
# teacher-euler-2 and teacher-dpmpp-2; each student at 1, 2 and 4 NFE; the training curves (every
# snapshot, on the table's first 1,000 samples); each student's velocity profile (first 500 samples) and
# its learnt weights and gammas. Output: runs/eval-shift3.2/{eval.json,index.html,*.png}.
# The teacher rows are kept in runs/eval-cache (shared with the models/ table) as they are made, so a run stopped by the time
# limit (or Ctrl-C) continues when the script is run again.
# Usage: [SHIFT1=1] [ARCFLOW=build/arcflow] scripts/shift32-eval.sh [MINUTES] [THREADS]
set -u
cd "$(dirname "$0")/.."
MINUTES=${1:-0}
THREADS=${2:-2}
A=${ARCFLOW:-build/arcflow}
OUT=runs/eval-shift3.2
R=runs/shift3.2
args=(-t "$THREADS" eval --teacher models/teacher.safetensors --shift 3.2 --cfg-scale 4 --teacher-steps 2
      -n 5000 -s 0 --gen-batch 64 --student-nfe 1,2,4 --curve-samples 1000 --velocity-profile 500
      --cache runs/eval-cache --time-limit "$MINUTES" -o "$OUT")
for name in linear-2 gmflow-2 arcflow-2; do
  args+=(--adapter "$name=$R/$name/adapter.safetensors" --curve "$name=$R/$name")
done
[ "${SHIFT1:-0}" = 1 ] && args+=(--reference-shifts 1)
exec "$A" "${args[@]}"
