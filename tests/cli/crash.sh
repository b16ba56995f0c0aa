#!/bin/sh
# CTest: crash safety. A tiny training run is killed with SIGKILL at random moments (checkpoints are
# written every step, so many kills land inside a write); after each kill the run folder must
# resume. Writes are atomic (temp file + rename), so the checkpoint is always the old or the new one.
# Usage: crash.sh ARCFLOW_BINARY
set -eu
bin=$1
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
base="-t 1 train-teacher --width 32 --depth 1 --heads 2 --batch 8 --limit-train 64 --log-every 1 -q -o $d/run"
args="$base --checkpoint-every 1"
"$bin" $args --iters 2
kills=0
for delay in 0.01 0.13 0.05 0.21 0.08 0.17 0.03 0.11; do
  lines=$(wc -l < "$d/run/train.jsonl")
  "$bin" $args --iters 1000000 --resume > "$d/log" 2>&1 &
  pid=$!
  # Once it is training (a new log line), kill it a little later: mid-step or mid-checkpoint.
  i=0
  while [ "$(wc -l < "$d/run/train.jsonl")" -le $((lines + 1)) ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i + 1)); done
  sleep $delay
  kill -9 $pid 2>/dev/null && kills=$((kills + 1))
  wait $pid 2>/dev/null || true
  ls "$d/run" | grep -v -e '^checkpoint.safetensors$' -e '^teacher.safetensors$' -e '^train.jsonl$' | sed 's/^/left by the kill: /' || true
  step=$("$bin" $args --iters 1000000 --resume --time-limit 0.0001 2>&1 | grep -o 'at step [0-9]*' | head -n 1) ||
    { echo "resume failed after kill $kills"; "$bin" $args --iters 1000000 --resume --time-limit 0.0001; exit 1; }
  echo "kill $kills after ${delay}s: resumed $step"
done
[ $kills -ge 4 ] || { echo "only $kills kills landed"; exit 1; }
echo "ok: $kills kills, every checkpoint resumed"

# SIGTERM and SIGINT: a checkpoint is written, the exit status is non-zero (130) and says so, and
# the run resumes from that checkpoint.
for sig in TERM INT; do
  lines=$(wc -l < "$d/run/train.jsonl")
  "$bin" $args --iters 1000000 --resume > "$d/log" 2>&1 &
  pid=$!
  i=0
  while [ "$(wc -l < "$d/run/train.jsonl")" -le $((lines + 1)) ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i + 1)); done
  kill -$sig $pid
  status=0
  wait $pid || status=$?
  [ $status -eq 130 ] || { echo "SIG$sig: exit status $status, expected 130"; cat "$d/log"; exit 1; }
  said=$(grep -o 'interrupted at step [0-9]*; checkpoint written' "$d/log") ||
    { echo "SIG$sig: no 'interrupted ... checkpoint written' message"; cat "$d/log"; exit 1; }
  at=$(echo "$said" | grep -o 'step [0-9]*')
  resumed=$("$bin" $args --iters 1000000 --resume --time-limit 0.0001 2>&1 | grep -o 'at step [0-9]*' | head -n 1)
  [ "$resumed" = "at $at" ] || { echo "SIG$sig: stopped at $at but resumed $resumed"; exit 1; }
  echo "ok: SIG$sig -> status 130, '$said', resumed $resumed"
done

# Divergence: a learning rate of 1e30 makes every loss non-finite. Each such step is skipped with a
# warning; 20 in a row stop the run with a clear error (exit 1), and the checkpoint written before
# still resumes at the step it holds.
status=0
"$bin" $base --iters 1000000 --resume --lr 1e30 --warmup-iters 0 --checkpoint-every 1000000 > "$d/log" 2>&1 || status=$?
[ $status -eq 1 ] || { echo "divergence: exit status $status, expected 1"; tail -n 5 "$d/log"; exit 1; }
grep -q 'non-finite losses or gradients in a row' "$d/log" || { echo "divergence: no clear error"; tail -n 5 "$d/log"; exit 1; }
skips=$(grep -c 'non-finite loss or gradient, step skipped' "$d/log")
before=$(grep -o 'resumed from .* at step [0-9]*' "$d/log" | grep -o 'at step [0-9]*')
after=$("$bin" $args --iters 1000000 --resume --time-limit 0.0001 2>&1 | grep -o 'at step [0-9]*' | head -n 1)
[ "$after" = "$before" ] || { echo "divergence: checkpoint moved from $before to $after"; exit 1; }
echo "ok: lr 1e30 -> $skips steps skipped with a warning, then a clear error; checkpoint still $after"
