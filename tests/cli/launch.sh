#!/bin/sh
# CTest: data-parallel distillation through the command line, on loopback.
#  1. `arcflow launch -n 2` with batch 2 per process logs the same losses as one process with batch
#     4 in 2 micro-batches (the same samples), and it resumes;
#  2. when one rank is killed (SIGKILL) mid-run, the launch fails within the timeout saying so, and
#     the last checkpoint still resumes.
# Usage: launch.sh ARCFLOW_BINARY
set -eu
bin=$1
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
port=$((20000 + $$ % 20000))
"$bin" -t 1 train-teacher --width 32 --depth 1 --heads 2 --iters 4 --batch 8 --limit-train 64 -q -o "$d/t"
common="--teacher $d/t/teacher.safetensors --total-substeps 8 --lora-dropout 0 --dist-timeout 20 -q"

"$bin" launch -n 2 --master-port $port -- distill $common --batch 2 --iters 4 -o "$d/dp"
"$bin" -t 1 distill $common --batch 4 --micro-batches 2 --iters 4 -o "$d/sp"
a=$(grep -o '"loss":[^,]*' "$d/dp/train.jsonl")
b=$(grep -o '"loss":[^,]*' "$d/sp/train.jsonl")
[ "$a" = "$b" ] || { echo "losses differ:"; echo "$a"; echo "$b"; exit 1; }
echo "ok: 2 processes x batch 2 = 1 process x 2 micro-batches of 2 ($(echo "$a" | wc -l) log lines)"
"$bin" launch -n 2 --master-port $((port + 1)) -- distill $common --batch 2 --iters 6 -o "$d/dp" --resume
grep -q '"iteration":6,' "$d/dp/train.jsonl" || { echo "resume did not reach iteration 6"; exit 1; }
echo "ok: resumed to iteration 6"

# A rank killed mid-run.
"$bin" launch -n 2 --master-port $((port + 2)) -- distill $common --batch 2 --iters 100000 --checkpoint-every 2 \
  -o "$d/kill" > "$d/kill.log" 2>&1 &
launcher=$!
i=0
while [ ! -f "$d/kill/checkpoint.safetensors" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
sleep 1
victim=$(ps -o pid= --ppid $launcher | tail -n 1)
kill -9 $victim
start=$(date +%s)
status=0
wait $launcher || status=$?
took=$(( $(date +%s) - start ))
cat "$d/kill.log" | tail -n 5
[ $status -ne 0 ] || { echo "launch exited 0 after a rank was killed"; exit 1; }
[ $took -le 60 ] || { echo "took $took s to notice the lost rank"; exit 1; }
grep -q "exited with status" "$d/kill.log" || { echo "no message about the lost rank"; exit 1; }
echo "ok: failed with status $status in $took s after rank kill"
last=$(grep -o '"iteration":[0-9]*,' "$d/kill/train.jsonl" | tail -n 1 | tr -dc 0-9)
"$bin" launch -n 2 --master-port $((port + 3)) -- distill $common --batch 2 --iters $((last + 2)) -o "$d/kill" --resume
echo "ok: the checkpoint resumed after the kill (to iteration $((last + 2)))"
