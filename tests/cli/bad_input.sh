#!/bin/sh
# CTest: bad command-line values, config values and input files fail at once (exit status != 0, no
# long work) with an error line that names the flag, key or file. Usage: bad_input.sh ARCFLOW_BINARY
# (run from the repository root: it reads models/teacher.safetensors).
set -u
bin=$1
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0
# expect "NEEDLE" ARGS...: the command must fail within 60 s and print a line naming NEEDLE.
expect() {
  needle=$1
  shift
  out=$(timeout 60 "$bin" "$@" 2>&1)
  status=$?
  line=$(printf '%s\n' "$out" | grep -F -- "$needle" | head -n 1)
  if [ $status -eq 0 ] || [ $status -eq 124 ] || [ -z "$line" ]; then
    echo "FAIL (status $status) arcflow $*"
    printf '%s\n' "$out" | tail -n 3
    fail=1
  else
    echo "ok: arcflow $* -> $line"
  fi
}
T=models/teacher.safetensors
head -c 5000 "$T" > "$d/truncated.safetensors"
printf 'lr = "fast"\n' > "$d/bad.toml"
printf 'learning-rate = 1e-4\n' > "$d/unknown.toml"
printf 'iters = [\n' > "$d/broken.toml"

expect "--steps" sample --teacher $T --steps -1
expect "--sampler" sample --teacher $T --sampler foo
expect "--teacher" sample --teacher "$d/missing.safetensors"
expect "truncated.safetensors" sample --teacher "$d/truncated.safetensors"
expect "--adapter" sample --teacher $T --adapter "$d/missing.safetensors"
expect "--nfe" distill --teacher $T --nfe 0
expect "-K" distill --teacher $T -K 0
expect "--micro-batches" distill --teacher $T --batch 16 --micro-batches 3
expect "--teacher" distill --teacher "$d/missing.safetensors"
expect "/proc/nope" distill --teacher $T -o /proc/nope/run
expect "rank" distill --teacher $T --world-size 2 --rank 5
expect "iters" train-teacher --iters -5 -o "$d/t"
expect "lr" train-teacher --config "$d/bad.toml" -o "$d/t"
expect "learning-rate" train-teacher --config "$d/unknown.toml" -o "$d/t"
expect "broken.toml" train-teacher --config "$d/broken.toml" -o "$d/t"
expect "--data-dir" train-teacher --data-dir "$d/nothing" -o "$d/t"
expect "-n" eval --teacher $T -n 1
expect "--adapter" eval --teacher $T --adapter "no-equals-sign"
expect "--curve" eval --teacher $T --curve "no-equals-sign"
expect "$d/norun/snapshots" eval --teacher $T --curve "a=$d/norun"
expect "--reference-shifts" eval --teacher $T --reference-shifts 0
expect "--curve" eval --samples "$d/missing.safetensors" --curve "a=$d"
expect "--samples" eval --samples "$d/missing.safetensors"
expect "--nfe" toy --nfe 0
expect "-n" launch -n 0 -- distill
expect "--teacher" demo --teacher "$d/missing.safetensors"
exit $fail
