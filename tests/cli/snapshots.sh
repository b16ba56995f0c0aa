#!/bin/sh
# CTest: `arcflow distill --snapshot-every N` keeps the EMA adapter every N iterations.
#  1. A 4-iteration run with --snapshot-every 2 writes exactly snapshots/adapter-000002.safetensors
#     and snapshots/adapter-000004.safetensors;
#  2. the latter is byte for byte (so tensor for tensor) the run's adapter.safetensors;
#  3. the former holds the same tensors as the adapter of a separate 2-iteration run with the same
#     settings (the tensor data after the safetensors header compared; the headers differ in the
#     command line) and says iteration 2 in its metadata.
# Usage: snapshots.sh ARCFLOW_BINARY
set -eu
bin=$1
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$bin" -t 1 train-teacher --width 32 --depth 1 --heads 2 --iters 4 --batch 8 --limit-train 64 -q -o "$d/t"
common="--teacher $d/t/teacher.safetensors --total-substeps 8 --lora-dropout 0 --batch 2 -q"
"$bin" -t 1 distill $common --iters 4 --snapshot-every 2 -o "$d/run"
"$bin" -t 1 distill $common --iters 2 -o "$d/two"

files=$(ls "$d/run/snapshots" | tr '\n' ' ')
[ "$files" = "adapter-000002.safetensors adapter-000004.safetensors " ] ||
  { echo "snapshots: expected adapter-000002 and adapter-000004, got: $files"; exit 1; }
echo "ok: snapshots $files"
cmp "$d/run/snapshots/adapter-000004.safetensors" "$d/run/adapter.safetensors" ||
  { echo "adapter-000004 differs from adapter.safetensors"; exit 1; }
echo "ok: adapter-000004 = adapter.safetensors (byte for byte)"

# The tensor data of a safetensors file: everything after the 8-byte header length and the header.
data() {
  n=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
  tail -c +$((9 + n)) "$1"
}
data "$d/run/snapshots/adapter-000002.safetensors" > "$d/snap2.bin"
data "$d/two/adapter.safetensors" > "$d/two.bin"
data "$d/run/adapter.safetensors" > "$d/four.bin"
[ -s "$d/two.bin" ] || { echo "empty tensor data"; exit 1; }
cmp "$d/snap2.bin" "$d/two.bin" || { echo "adapter-000002 differs from a 2-iteration run's adapter"; exit 1; }
if cmp -s "$d/snap2.bin" "$d/four.bin"; then echo "adapter-000002 equals the iteration-4 adapter"; exit 1; fi
grep -aq '"iteration":"2"' "$d/run/snapshots/adapter-000002.safetensors" ||
  { echo "adapter-000002 does not say iteration 2"; exit 1; }
echo "ok: adapter-000002 = the adapter of a 2-iteration run ($(wc -c < "$d/two.bin") bytes of tensors), not the final one"
