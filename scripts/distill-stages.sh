#!/bin/bash
# Distil several students side by side in stages of 400 iterations taken in turn (stage-major, so the runs
# stay level and every stage's EMA adapter is kept as RUNS/NAME/snapshots/adapter-ITER.safetensors for the
# training curve; `arcflow eval --curve NAME=RUNS/NAME`). Resumable: rerun it and it continues from each
# run's checkpoint. The recipes are CONFIGS/PREFIX<NAME>.toml; scripts/shift32-distill.sh and
# scripts/flux-fashion-distill.sh set them.
# Usage: CONFIGS=DIR RUNS=DIR [PREFIX=...] [NAMES="a b"] [STAGES="400 800"] scripts/distill-stages.sh [MINUTES] [THREADS]
#   (stops cleanly, checkpoints written, after MINUTES). STAGES are the iterations at which a stage ends
#   (default 400 800 1200 1600 2000); a run whose recipe has fewer `iters` stops at its own count.
# Two copies can share a machine (e.g. one thread each on 2 cores): a run being trained by one copy is locked
# (RUN/.lock) and the other copy goes on with the next run. NAMES sets the runs and their order.
set -u
cd "$(dirname "$0")/.."
MINUTES=${1:-100000}
THREADS=${2:-1}
A=${ARCFLOW:-build/arcflow}
CONFIGS=${CONFIGS:?set CONFIGS to the recipes folder}
RUNS=${RUNS:?set RUNS to the runs folder}
PREFIX=${PREFIX:-}
END=$(( $(date +%s) + ${MINUTES%.*} * 60 ))
STAGES=${STAGES:-400 800 1200 1600 2000}
prev=""
for stage in $STAGES; do
  for name in ${NAMES:-linear-2 gmflow-2 arcflow-2}; do
    run=$RUNS/$name
    cap=$(sed -n 's/^iters *= *\([0-9]*\).*/\1/p' "$CONFIGS/$PREFIX$name.toml" | head -1)
    if [ -n "$cap" ] && [ "$stage" -gt "$cap" ]; then continue; fi
    snap=$run/snapshots/adapter-$(printf %06d $stage).safetensors
    [ -f "$snap" ] && continue
    if [ -n "$prev" ] && { [ -z "$cap" ] || [ "$prev" -le "$cap" ]; } &&
       [ ! -f "$run/snapshots/adapter-$(printf %06d $prev).safetensors" ]; then
      echo "$name: no snapshot of iteration $prev yet (the other copy has it): skipping stage $stage"; continue
    fi
    left=$(( (END - $(date +%s)) / 60 ))
    if [ "$left" -lt 2 ]; then echo "time is up before $name stage $stage"; exit 0; fi
    mkdir -p "$run"
    resume=""; [ -f "$run/checkpoint.safetensors" ] && resume=--resume
    echo "== $name to iteration $stage ($left min left) $(date -u +%H:%M:%S)"
    flock -n -E 200 "$run/.lock" "$A" -t "$THREADS" distill --config "$CONFIGS/$PREFIX$name.toml" -o "$run" \
      --iters "$stage" $resume --time-limit "$left" -q
    rc=$?
    if [ $rc -eq 200 ]; then echo "$name is being trained by another copy: next run"; continue; fi
    if [ $rc -ne 0 ]; then echo "$name stopped (exit $rc) before iteration $stage"; exit $rc; fi
    it=$(python3 -c "import json,sys; print([json.loads(l) for l in open('$run/train.jsonl')][-1].get('iteration',-1))")
    if [ "$it" = "$stage" ]; then
      mkdir -p "$run/snapshots"; cp "$run/adapter.safetensors" "$snap.tmp" && mv "$snap.tmp" "$snap"
    else
      echo "$name at iteration $it, not $stage: stopping (time limit)"; exit 0
    fi
  done
  prev=$stage
done
echo "all runs at their last stage ($stage iterations, or their recipe's own count)"
