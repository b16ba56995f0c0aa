#!/bin/sh
# CTest: `arcflow sample` and `arcflow bench` on a FLUX model folder (the tiny random models of
# tests/data/flux, diffusers layout): a PNG grid of the right size, reproducible latents, FLUX
# bench rows, and one-line errors for misuse. Usage: flux.sh ARCFLOW_BINARY (from the repository root).
set -u
bin=$1
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0
F=tests/data/flux
# PNG width and height from the IHDR chunk (bytes 16..23, big-endian).
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{print $3*256+$4 "x" $7*256+$8}'; }
run() {
  if ! out=$(timeout 300 "$bin" -t 1 "$@" 2>&1); then echo "FAIL: arcflow $*"; printf '%s\n' "$out" | tail -n 5; fail=1; fi
}
expect() {
  needle=$1
  shift
  out=$(timeout 60 "$bin" -t 1 "$@" 2>&1)
  status=$?
  line=$(printf '%s\n' "$out" | grep -F -- "$needle" | head -n 1)
  if [ $status -eq 0 ] || [ -z "$line" ]; then
    echo "FAIL (status $status) arcflow $*"; printf '%s\n' "$out" | tail -n 3; fail=1
  else
    echo "ok: arcflow $* -> $line"
  fi
}
run sample --teacher $F/dev --prompts $F/prompts.safetensors --steps 2 --shift 3.2 --guidance 3.5 --height 32 \
  --width 24 -o "$d/grid.png" --save-tensors "$d/a.safetensors" -q
size=$(png_size "$d/grid.png")
# three prompts -> three images of 24 x 32 in one row, 2 pixels apart
if [ "$size" = "76x32" ]; then echo "ok: grid $size"; else echo "FAIL: grid is $size, expected 76x32"; fail=1; fi
# the same command again: the same latents, byte for byte (seeded noise, deterministic network)
cp "$d/a.safetensors" "$d/first.safetensors"
run sample --teacher $F/dev --prompts $F/prompts.safetensors --steps 2 --shift 3.2 --guidance 3.5 --height 32 \
  --width 24 -o "$d/grid.png" --save-tensors "$d/a.safetensors" -q
cmp -s "$d/a.safetensors" "$d/first.safetensors" || { echo "FAIL: a repeated run wrote other tensors"; fail=1; }
run sample --teacher $F/dev --prompts $F/prompts.safetensors --steps 2 --shift 3.2 --height 32 --width 24 -n 5 \
  -o "$d/five.png" -q
[ "$(png_size "$d/five.png")" = "128x32" ] || { echo "FAIL: -n 5 grid is $(png_size "$d/five.png")"; fail=1; }
# schnell-like (no guidance embedding, no VAE folder): latents only
run sample --teacher $F/schnell --prompts $F/prompts.safetensors --steps 4 --height 32 --width 48 -o '' \
  --save-tensors "$d/schnell.safetensors" -q
[ -s "$d/schnell.safetensors" ] || { echo "FAIL: no schnell latents"; fail=1; }
run bench --teacher $F/dev --resolutions 32 --teacher-steps 3 --text-tokens 8 --repeats 1 -o "$d/bench.json"
grep -q '"ms_per_nfe"' "$d/bench.json" || { echo "FAIL: no ms_per_nfe in bench.json"; fail=1; }
run bench --random-weights --config tiny --resolutions 32 --teacher-steps 3 --text-tokens 8 --repeats 1 \
  --distill-iters 1 --lora-rank 4 -o "$d/bench-random.json"
grep -q '"teacher-3_s_per_image"' "$d/bench-random.json" || { echo "FAIL: no teacher row in bench-random.json"; fail=1; }
# the distillation rows: with and without block checkpointing, each timed (no "error")
python3 - "$d/bench-random.json" <<'PY' || fail=1
import json, sys
row = json.load(open(sys.argv[1]))["rows"][0]
for key, ckpt in (("distill", False), ("distill_checkpoint_blocks", True)):
    r = row.get(key)
    if not r or r.get("checkpoint_blocks") != ckpt or "error" in r or not r.get("s_per_iter", 0) > 0 \
            or not 0 < r.get("trainable_fraction", 0) < 1:
        sys.exit("FAIL: bench distillation row %s: %s" % (key, r))
PY

# distil a student from the folder (2 iterations) and sample it through the same command
run distill --teacher $F/dev --prompts $F/prompts.safetensors --height 32 --width 32 --shift 3.2 --guidance 3.5 \
  --iters 2 --batch 2 -K 4 --lora-rank 4 --lora-alpha 4 --total-substeps 16 --train-norm-out --checkpoint-blocks \
  -o "$d/run" -q
run sample --teacher $F/dev --adapter "$d/run/adapter.safetensors" --prompts $F/prompts.safetensors --height 32 \
  --width 32 -o "$d/student.png" -q
[ "$(png_size "$d/student.png")" = "100x32" ] || { echo "FAIL: student grid is $(png_size "$d/student.png")"; fail=1; }
# the run also wrote its student in the reference's folder layout; that, and the reference fixture, sample too
run sample --teacher $F/dev --adapter "$d/run/reference-adapter" --prompts $F/prompts.safetensors --height 32 \
  --width 32 -o "$d/student-ref.png" -q
run sample --teacher $F/dev --adapter $F/arcflow-adapter --prompts $F/prompts.safetensors --height 32 --width 32 \
  -o "$d/fixture.png" -q
[ "$(png_size "$d/fixture.png")" = "100x32" ] || { echo "FAIL: fixture grid is $(png_size "$d/fixture.png")"; fail=1; }
# the shift sampled at is recorded: the student's own (its adapter's 3.2), not the teacher's default
python3 - "$d/student.png" <<'PY' || fail=1
import sys, zlib
data, text = open(sys.argv[1], "rb").read(), {}
i = 8
while i < len(data):
    n = int.from_bytes(data[i:i + 4], "big"); kind = data[i + 4:i + 8]; body = data[i + 8:i + 8 + n]; i += 12 + n
    if kind == b"tEXt":
        k, v = body.split(b"\0", 1); text[k.decode()] = v.decode("latin-1")
if text.get("shift") != "3.2" or text.get("shift_rule") != "the adapter's":
    sys.exit("FAIL: student PNG records shift %r (%r), expected 3.2 (the adapter's)" % (text.get("shift"), text.get("shift_rule")))
print("ok: the student PNG records shift 3.2, the adapter's")
PY
# without --shift the teacher samples at its folder's scheduler rule: FLUX.1-dev's dynamic shift
# exp(mu), mu = 0.5 + (n - 256) (1.15 - 0.5) / (4096 - 256) for n image tokens (ARCFLOW.md section 7)
cp -r $F/dev "$d/dynamic"
mkdir -p "$d/dynamic/scheduler"
cat > "$d/dynamic/scheduler/scheduler_config.json" <<'JSON'
{"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.30.0.dev0", "base_image_seq_len": 256,
 "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
 "use_dynamic_shifting": true}
JSON
run sample --teacher "$d/dynamic" --prompts $F/prompts.safetensors --steps 2 --height 32 --width 24 -o '' \
  --save-tensors "$d/dynamic.safetensors" -q
python3 - "$d/dynamic.safetensors" "$d/dynamic/vae/config.json" <<'PY' || fail=1
import json, math, sys
raw = open(sys.argv[1], "rb").read()
meta = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])["__metadata__"]
down = 2 ** (len(json.load(open(sys.argv[2]))["block_out_channels"]) - 1)
n = (32 // down // 2) * (24 // down // 2)  # packed 2x2 latent tokens
want = math.exp(0.5 + (n - 256) * (1.15 - 0.5) / (4096 - 256))
got = float(meta["shift"])
if abs(got - want) > 1e-12 * want or not meta.get("shift_rule", "").startswith("dynamic"):
    sys.exit("FAIL: dynamic shift %r (%s), expected %.17g for %d tokens" % (got, meta.get("shift_rule"), want, n))
print("ok: dynamic shift %.6f for %d image tokens" % (got, n))
PY
sed 's/"use_dynamic_shifting": true}/"use_dynamic_shifting": true, "shift_terminal": 0.02}/' \
  "$d/dynamic/scheduler/scheduler_config.json" > "$d/sc.json" && mv "$d/sc.json" "$d/dynamic/scheduler/scheduler_config.json"
expect "scheduler_config.json: \"shift_terminal\"" sample --teacher "$d/dynamic" --prompts $F/prompts.safetensors \
  --height 32 --width 24 -o '' --save-tensors "$d/x.safetensors"
expect "--prompts" distill --teacher $F/dev -o "$d/run2" --iters 1
expect "--prompts" sample --teacher $F/dev -o "$d/x.png"
expect "no guidance embedding" sample --teacher $F/schnell --prompts $F/prompts.safetensors --guidance 3.5 -o '' \
  --save-tensors "$d/x.safetensors" --height 32 --width 32
expect "multiples of 8" sample --teacher $F/dev --prompts $F/prompts.safetensors --height 30 --width 32 -o "$d/x.png"
expect "--cfg-scale" sample --teacher $F/dev --prompts $F/prompts.safetensors --cfg-scale 4 -o "$d/x.png"
expect "--dtype" sample --teacher $F/dev --prompts $F/prompts.safetensors --dtype float8 -o "$d/x.png"
expect "FLUX model folders" sample --teacher models/teacher.safetensors --prompts $F/prompts.safetensors -o "$d/x.png"
expect "vae/config.json" sample --teacher $F/schnell --prompts $F/prompts.safetensors --height 32 --width 32 \
  -o "$d/x.png"
exit $fail
