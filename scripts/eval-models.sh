#!/bin/bash
# The headline table of the students shipped in models/ (README "Distilled students"): the teacher's 50
# guided Euler steps (the 100-NFE reference), its 1- and 2-step guided Euler and DPM-Solver++(2M) rows,
# and linear-2, gmflow-2 and arcflow-2 at 1, 2 and 4 NFE, all from the same 5,000 noises and labels
# (seed 0, classes cycling), at shift 1 and guidance 4. Output: runs/eval-models/{eval.json,index.html}.
# The teacher rows are kept in runs/eval-cache (shared with scripts/shift32-eval.sh, whose shift-1 row is
# this table's reference) as they are made, so a run stopped by the time limit (or Ctrl-C) continues
# when the script is run again.
# Usage: [ARCFLOW=build/arcflow] scripts/eval-models.sh [MINUTES] [THREADS]
set -u
cd "$(dirname "$0")/.."
MINUTES=${1:-0}
THREADS=${2:-2}
A=${ARCFLOW:-build/arcflow}
args=(-t "$THREADS" eval --teacher models/teacher.safetensors --classifier models/classifier.safetensors
      --teacher-steps 1,2 --student-nfe 1,2,4 -n 5000 -s 0 --gen-batch 64 --cache runs/eval-cache
      --time-limit "$MINUTES" -o runs/eval-models)
for name in linear-2 gmflow-2 arcflow-2; do
  [ -f "models/$name.safetensors" ] && args+=(--adapter "$name=models/$name.safetensors")
done
exec "$A" "${args[@]}"
