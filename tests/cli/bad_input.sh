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
mkdir -p "$d/empty-folder"

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
# A broken diffusers model folder (copies of the tiny FLUX fixture): each fault gets one line naming its file or key.
P=tests/data/flux/prompts.safetensors
broken() { rm -rf "$d/$1"; cp -r tests/data/flux/dev "$d/$1"; }
broken cut; head -c 100 tests/data/flux/dev/transformer/config.json > "$d/cut/transformer/config.json"
expect "cut/transformer/config.json" sample --teacher "$d/cut" --prompts $P -o "$d/x.png"
broken layers; sed 's/"num_layers": *[0-9]*/"num_layers": 1000000000/' tests/data/flux/dev/transformer/config.json \
  > "$d/layers/transformer/config.json"
expect "num_layers" sample --teacher "$d/layers" --prompts $P -o "$d/x.png"
broken noshard; rm "$d/noshard/transformer/diffusion_pytorch_model-00002-of-00002.safetensors"
expect "00002-of-00002" sample --teacher "$d/noshard" --prompts $P -o "$d/x.png"
broken escape; sed 's|diffusion_pytorch_model-00002-of-00002.safetensors|../../../etc/passwd|' \
  tests/data/flux/dev/transformer/diffusion_pytorch_model.safetensors.index.json \
  > "$d/escape/transformer/diffusion_pytorch_model.safetensors.index.json"
expect "etc/passwd" sample --teacher "$d/escape" --prompts $P -o "$d/x.png"
head -c 700 $P > "$d/cut-prompts.safetensors"
expect "cut-prompts.safetensors" sample --teacher tests/data/flux/dev --prompts "$d/cut-prompts.safetensors" -o "$d/x.png"
expect "--guidance" sample --teacher tests/data/flux/dev --prompts $P --guidance nan -o "$d/x.png"
expect "empty-folder" sample --teacher "$d/empty-folder" --prompts $P -o "$d/x.png"
# Requests past this machine's memory are refused before anything large is allocated, naming the flags.
expect "--height, --width and --batch" sample --teacher tests/data/flux/dev --prompts tests/data/flux/prompts.safetensors \
  --height 1000000 --width 1000000
expect "-n: this request needs about" sample --teacher $T -n 4000000000
expect "--batch: this request needs about" sample --teacher $T -n 100000000 --batch 100000000
expect "--batch and --micro-batches" distill --teacher $T --batch 10000000 --iters 1 -o "$d/big"
expect "--batch-sizes" bench --teacher $T --batch-sizes 1,100000000 --skip-training -o "$d/b.json"
expect "--gen-batch" eval --teacher $T -n 1000000 --gen-batch 1000000 -o "$d/e"
expect "-n: this request needs about" eval --teacher $T -n 4000000000 -o "$d/e"
# Adapter paths that are neither an adapter file nor an adapter folder: one line saying what was found.
expect "not an adapter: the folder has no config.json" sample --teacher $T --adapter "$d/empty-folder"
expect "(a model, not an adapter)" sample --teacher tests/data/flux/dev --prompts tests/data/flux/prompts.safetensors \
  --adapter tests/data/flux/dev/transformer
expect "not an adapter" eval --teacher $T --adapter "a=$d/empty-folder"
expect "--temperature" sample --teacher $T --adapter models/arcflow-2.safetensors --temperature 0
expect "--temperature" sample --teacher $T --temperature 0.5
expect "--temperature" eval --teacher $T --adapter a=models/gmflow-2.safetensors --temperature auto,warm
exit $fail
