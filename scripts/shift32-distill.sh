#!/bin/bash
# Issue "The paper's claim at the reference's settings": distil linear-2, gmflow-2 and arcflow-2 at shift 3.2
# from configs/shift3.2/*.toml, in stages of 400 iterations taken in turn (stage-major, so the three runs stay
# level and every stage's EMA adapter is kept as runs/shift3.2/NAME/snapshots/adapter-ITER.safetensors for the
# training curve). Resumable: rerun it and it continues from each run's checkpoint.
# Usage: scripts/shift32-distill.sh [MINUTES] [THREADS]   (stops cleanly, checkpoints written, after MINUTES)
set -u
cd "$(dirname "$0")/.."
MINUTES=${1:-100000}
THREADS=${2:-1}
A=${ARCFLOW:-build/arcflow}
END=$(( $(date +%s) + ${MINUTES%.*} * 60 ))
for stage in 400 800 1200 1600 2000; do
  for name in linear-2 gmflow-2 arcflow-2; do
    run=runs/shift3.2/$name
    snap=$run/snapshots/adapter-$(printf %06d $stage).safetensors
    [ -f "$snap" ] && continue
    left=$(( (END - $(date +%s)) / 60 ))
    if [ "$left" -lt 2 ]; then echo "time is up before $name stage $stage"; exit 0; fi
    resume=""; [ -f "$run/checkpoint.safetensors" ] && resume=--resume
    echo "== $name to iteration $stage ($left min left) $(date -u +%H:%M:%S)"
    "$A" -t "$THREADS" distill --config "configs/shift3.2/$name.toml" -o "$run" --iters "$stage" $resume \
      --time-limit "$left" -q
    rc=$?
    if [ $rc -ne 0 ]; then echo "$name stopped (exit $rc) before iteration $stage"; exit $rc; fi
    it=$(python3 -c "import json,sys; print([json.loads(l) for l in open('$run/train.jsonl')][-1].get('iteration',-1))")
    if [ "$it" = "$stage" ]; then
      mkdir -p "$run/snapshots"; cp "$run/adapter.safetensors" "$snap.tmp" && mv "$snap.tmp" "$snap"
    else
      echo "$name at iteration $it, not $stage: stopping (time limit)"; exit 0
    fi
  done
done
echo "all runs at 2000 iterations"
