#!/bin/sh
# CTest: the FLUX-architecture teacher on Fashion-MNIST end to end, on a tiny transformer:
#  1. `train-teacher --arch flux` trains it, writes teacher.safetensors and class-prompts.safetensors
#     (11 rows: the ten class names and the null class ""), and resumes;
#  2. `sample --class` draws from it (labels through the class prompts), reproducibly;
#  3. `distill` makes ArcFlow-2 and GMFlow-2 students of it (LoRA on FLUX's targets) and
#     `eval --teacher` puts teacher and students in one table;
#  4. bad input: --arch flux without --flux-config, a DiT flag's config file as --flux-config.
# Usage: flux_teacher.sh ARCFLOW_BINARY   (from the repository root)
set -eu
bin=$1
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
cat > "$d/tiny.json" <<'JSON'
{"_class_name": "FluxTransformer2DModel", "attention_head_dim": 8, "axes_dims_rope": [2, 2, 4],
 "guidance_embeds": false, "in_channels": 4, "joint_attention_dim": 16, "num_attention_heads": 2,
 "num_layers": 1, "num_single_layers": 1, "pooled_projection_dim": 8}
JSON
t="$bin -t 1 train-teacher --arch flux --flux-config $d/tiny.json --prompt-tokens 2 --batch 4 --limit-train 64 -q"
$t --iters 2 -o "$d/t" > "$d/train.log"
grep -q "^FLUX: " "$d/train.log" || { cat "$d/train.log"; echo "no FLUX summary line"; exit 1; }
$t --iters 3 --resume -o "$d/t" > "$d/resume.log"
grep -q "resumed from .* at step 2" "$d/resume.log" || { cat "$d/resume.log"; echo "did not resume at step 2"; exit 1; }
for f in teacher.safetensors class-prompts.safetensors checkpoint.safetensors; do
  [ -s "$d/t/$f" ] || { echo "missing $f"; exit 1; }
done
grep -aq '"model":"flux"' "$d/t/teacher.safetensors" || { echo "teacher.safetensors is not a flux file"; exit 1; }
grep -aq 'Ankle boot' "$d/t/class-prompts.safetensors" || { echo "class prompts lack the class names"; exit 1; }
echo "ok: train-teacher --arch flux trains, resumes, writes the teacher and the class prompts"

# The same command twice (the PNG records its command line): the same bytes.
"$bin" -t 1 sample --teacher "$d/t/teacher.safetensors" --class 9 -n 2 --steps 2 -o "$d/a.png" -q
mv "$d/a.png" "$d/first.png"
"$bin" -t 1 sample --teacher "$d/t/teacher.safetensors" --class 9 -n 2 --steps 2 -o "$d/a.png" -q
cmp "$d/a.png" "$d/first.png" || { echo "sampling is not reproducible"; exit 1; }
echo "ok: sample --class from the FLUX teacher, byte-identical on repeat"

for p in arcflow gmflow; do
  "$bin" -t 1 distill --teacher "$d/t/teacher.safetensors" --policy $p --iters 2 --batch 2 --total-substeps 4 \
    --lora-rank 2 -q -o "$d/$p" > "$d/$p.log"
  grep -q "trainable" "$d/$p.log" || { cat "$d/$p.log"; exit 1; }
done
"$bin" -t 1 eval --teacher "$d/t/teacher.safetensors" --adapter arcflow-2="$d/arcflow/adapter.safetensors" \
  --adapter gmflow-2="$d/gmflow/adapter.safetensors" -n 4 --reference-steps 2 --teacher-steps 1 --grid-images 2 \
  -o "$d/eval" -q > "$d/eval.log"
for row in arcflow-2 gmflow-2 teacher-euler; do
  grep -q "$row" "$d/eval/eval.json" || { cat "$d/eval.log"; echo "eval.json lacks $row"; exit 1; }
done
echo "ok: ArcFlow-2 and GMFlow-2 students of the FLUX teacher distilled and evaluated"

if "$bin" train-teacher --arch flux -o "$d/x" > "$d/err" 2>&1; then echo "--arch flux without a config ran"; exit 1; fi
grep -q "flux-config" "$d/err" || { cat "$d/err"; echo "the error does not name --flux-config"; exit 1; }
echo '{"width": 3}' > "$d/bad.json"
if "$bin" train-teacher --arch flux --flux-config "$d/bad.json" -o "$d/y" > "$d/err" 2>&1; then
  echo "a bad --flux-config ran"; exit 1
fi
grep -q "width" "$d/err" || { cat "$d/err"; echo "the error does not name the bad key"; exit 1; }
echo "ok: bad --arch flux input refused with one-line errors"
