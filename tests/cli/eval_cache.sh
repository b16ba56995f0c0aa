#!/bin/sh
# CTest: `arcflow eval --teacher ... --cache DIR --time-limit M` and the diagnosis flags, end to end on a
# tiny teacher and student (the shipped classifier and the Fashion-MNIST test set score them):
#  1. a time limit that has passed stops the table with exit status 75 and says how to continue;
#  2. with --cache the table completes and leaves one file per teacher row; run again, it reuses them
#     (the files untouched, the rows' timing that of the run that made them) and gives the same table as a run without a cache, number for number
#     (ms_per_image aside);
#  3. --velocity-profile N and --curve ... --curve-samples N put "velocity_profiles" and "curves" (with
#     its n) into eval.json and their sections into index.html;
#  4. --temperature auto,1: one row per adapter and distinct temperature, recorded in eval.json.
# Usage: eval_cache.sh ARCFLOW_BINARY   (from the repository root)
set -eu
bin=$1
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$bin" -t 1 train-teacher --width 32 --depth 1 --heads 2 --iters 2 --batch 8 --limit-train 64 -q -o "$d/t"
"$bin" -t 1 distill --teacher "$d/t/teacher.safetensors" --total-substeps 8 --lora-dropout 0 --batch 2 --iters 2 \
  --snapshot-every 1 -q -o "$d/s"
table="-t 1 eval --teacher $d/t/teacher.safetensors --adapter a-2=$d/s/adapter.safetensors -n 20 --reference-steps 3
  --gen-batch 8 --grid-images 0"

set +e
"$bin" $table --cache "$d/cache" --time-limit 0.000001 -q -o "$d/e0" 2> "$d/err"
rc=$?
set -e
[ $rc -eq 75 ] || { echo "expected exit 75 at the time limit, got $rc"; cat "$d/err"; exit 1; }
grep -q "time limit" "$d/err" && grep -q "run the same command again" "$d/err" ||
  { echo "no time-limit message:"; cat "$d/err"; exit 1; }
echo "ok: time limit: exit 75, $(head -c 120 "$d/err")"

"$bin" $table --cache "$d/cache" -q -o "$d/e1" --velocity-profile 6 --profile-points 3 --curve a-2="$d/s" \
  --curve-samples 10 > "$d/out1"
[ -f "$d/cache/teacher-euler-3-cfg-4-shift-1.safetensors" ] && [ -f "$d/cache/teacher-euler-2-cfg-4-shift-1.safetensors" ] ||
  { echo "no cache files:"; ls "$d/cache"; exit 1; }
cp "$d/cache/teacher-euler-3-cfg-4-shift-1.safetensors" "$d/ref-before"
"$bin" $table --cache "$d/cache" -q -o "$d/e2" > "$d/out2"
# Reused, not made again: the file is untouched and the teacher rows report the time they took when made.
cmp -s "$d/ref-before" "$d/cache/teacher-euler-3-cfg-4-shift-1.safetensors" || { echo "the cached reference was rewritten"; exit 1; }
[ "$(grep "^teacher" "$d/out1")" = "$(grep "^teacher" "$d/out2")" ] ||
  { echo "the cached teacher rows differ (timing included):"; cat "$d/out1" "$d/out2"; exit 1; }
"$bin" $table -q -o "$d/e3" > "$d/out3"
rows() { grep -E "^(teacher|a-)" "$1" | awk '{$NF=""; print}'; }
rows "$d/out1" > "$d/r1"; rows "$d/out2" > "$d/r2"; rows "$d/out3" > "$d/r3"
[ "$(wc -l < "$d/r1")" -eq 4 ] || { echo "expected 4 rows:"; cat "$d/out1"; exit 1; }
cmp "$d/r1" "$d/r3" && cmp "$d/r2" "$d/r3" || { echo "cached and uncached tables differ:"; cat "$d/out1" "$d/out3"; exit 1; }
echo "ok: cached tables = the uncached one"; cat "$d/r1"

grep -q '"velocity_profiles"' "$d/e1/eval.json" && grep -q '"curves"' "$d/e1/eval.json" ||
  { echo "eval.json lacks velocity_profiles or curves"; exit 1; }
grep -q "Where the students' velocities depart" "$d/e1/index.html" && grep -q "its first 10 of 20" "$d/e1/index.html" ||
  { echo "index.html lacks the profile or the curve's sample count"; exit 1; }
grep -q "^velocity profile a-2" "$d/out1" || { echo "no profile line printed"; cat "$d/out1"; exit 1; }
echo "ok: $(grep "^velocity profile" "$d/out1" | head -c 160)"

# 4. Temperatures: a GMFlow adapter scored at auto and 1 gives two rows (pi-Flow's 0.1 on the first
#    step, then 1), the ArcFlow one a single row (its auto is 1); eval.json records each.
"$bin" -t 1 distill --teacher "$d/t/teacher.safetensors" --policy gmflow -K 2 --total-substeps 8 --lora-dropout 0 \
  --batch 2 --iters 2 -q -o "$d/g"
"$bin" -t 1 eval --teacher "$d/t/teacher.safetensors" --adapter a-2="$d/s/adapter.safetensors" \
  --adapter g-2="$d/g/adapter.safetensors" --temperature auto,1 -n 20 --reference-steps 3 --gen-batch 8 \
  --grid-images 0 --teacher-steps 1 -q -o "$d/e4" > "$d/out4"
node -e '
const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const row = m => j.rows.find(r => r.method === m);
const want = [["a-2", 1, "auto"], ["g-2", 0.1, "auto"], ["g-2-T1", 1, "given"]];
for (const [m, t, rule] of want) {
  const r = row(m);
  if (!r || Math.abs(r.temperature - t) > 1e-12 || r.temperature_rule !== rule)
    throw new Error(m + ": expected temperature " + t + " (" + rule + "), got " + JSON.stringify(r));
}
if (row("a-2-T1")) throw new Error("a-2 at T = 1 is its auto row: no second row expected");
if (j.adapters["g-2"].temperatures["g-2-T1"] !== 1) throw new Error("adapters.g-2.temperatures: " + JSON.stringify(j.adapters["g-2"]));
if (!row("g-2").description.includes("temperature 0.1 (auto)")) throw new Error("description: " + row("g-2").description);
' "$d/e4/eval.json" || { cat "$d/out4"; exit 1; }
echo "ok: temperatures: $(grep -E '^(a|g)-' "$d/out4" | awk '{print $1}' | tr '\n' ' ')"
