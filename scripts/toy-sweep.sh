#!/usr/bin/env bash
# The toy measurements of the README: checkerboard and 8gaussians, shift 3 and 1, nfe 2 and 1,
# default budget and seed. Each run writes toy-sweep/<data>-s<shift>-n<nfe>/ (report.json/html).
# Usage: scripts/toy-sweep.sh [extra arcflow toy flags]
set -euo pipefail
cd "$(dirname "$0")/.."
for data in checkerboard 8gaussians; do
  for shift in 3 1; do
    for nfe in 2 1; do
      dir="toy-sweep/$data-s$shift-n$nfe"
      echo "== $data shift $shift nfe $nfe"
      ./build/arcflow toy -q --data "$data" --shift "$shift" --nfe "$nfe" -o "$dir" "$@" | grep -v '^report:'
    done
  done
done
