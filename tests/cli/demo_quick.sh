#!/bin/sh
# CTest: `arcflow demo --quick` runs every piece (toy, shipped Fashion-MNIST weights, short eval) and
# its pages reference only images that exist; the Fashion-MNIST part shows every policy shipped in models/.
# Usage: demo_quick.sh ARCFLOW_BINARY (from the repo root).
set -eu
bin=$1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin" demo --quick -q -o "$out/demo"
fail=0
for page in "$out/demo/index.html" "$out/demo/fashion/index.html" "$out/demo/toy/report.html"; do
  [ -s "$page" ] || { echo "missing page $page"; exit 1; }
  dir=$(dirname "$page")
  imgs=$(grep -o 'src="[^"]*"' "$page" | sed 's/^src="//; s/"$//')
  [ -n "$imgs" ] || { echo "$page references no images"; fail=1; }
  for f in $imgs; do
    if [ -s "$dir/$f" ]; then echo "ok $page -> $f"; else echo "MISSING $page -> $f"; fail=1; fi
  done
done
for row in arcflow-2 linear-2 gmflow-2; do  # one per policy shipped in models/
  grep -q "fashion/$row" "$out/demo/index.html" || { echo "index.html lacks the Fashion-MNIST $row row"; fail=1; }
done
grep -q 'Speed-up' "$out/demo/index.html" || { echo "index.html lacks the speed-up"; fail=1; }
exit $fail
