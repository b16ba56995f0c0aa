#!/usr/bin/env bash
# Issue 3's teacher table: FID (classifier features), class accuracy and diversity of the shipped
# teacher at 100 NFE (Euler 50 steps, guidance 4) and at 2, 4 and 8 NFE for each sampler (guided:
# one Euler/DPM++ step = 2 NFE, one Heun step = 4 NFE), all from the same noise.
# Usage: scripts/eval-teacher.sh [N_SAMPLES] [OUT_DIR] [extra global flags, e.g. -t 2]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
OUT=${2:-runs/eval-teacher}
shift 2 || shift $#
mkdir -p "$OUT"
A=${ARCFLOW:-build/arcflow}
T=models/teacher.safetensors
C=models/classifier.safetensors
echo "method nfe fid accuracy diversity" > "$OUT/table.txt"
for spec in euler:50 euler:1 euler:2 euler:4 heun:1 heun:2 dpmpp_2m:1 dpmpp_2m:2 dpmpp_2m:4; do
  s=${spec%%:*}; k=${spec##*:}
  f="$OUT/$s-$k.safetensors"
  [ -f "$f" ] || $A sample --teacher $T --sampler "$s" --steps "$k" --cfg-scale 4 -n "$N" -s 0 -o "$OUT/$s-$k.png" \
    --save-tensors "$f" -q "$@" > /dev/null
  $A eval --samples "$f" --classifier $C -o "$OUT/$s-$k.json" "$@" > /dev/null
  python3 - "$OUT/$s-$k.json" "$s" "$k" >> "$OUT/table.txt" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); s, k = sys.argv[2], int(sys.argv[3])
nfe = k * (4 if s == "heun" else 2)
print(f"teacher-{s}-{k}step {nfe} {d['fid']:.3f} {d['accuracy']:.4f} {d['diversity']:.3f}")
PY
  tail -n 1 "$OUT/table.txt"
done
