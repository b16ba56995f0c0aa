#!/bin/bash
# Issue "The paper's claim at the reference's settings": linear-2, gmflow-2 and arcflow-2 distilled at shift
# 3.2 from configs/shift3.2/*.toml into runs/shift3.2/ (2,000 iterations each, snapshots every 400).
# Usage: [NAMES="arcflow-2 linear-2"] scripts/shift32-distill.sh [MINUTES] [THREADS]   (see distill-stages.sh)
cd "$(dirname "$0")/.." || exit 1
CONFIGS=configs/shift3.2 RUNS=runs/shift3.2 exec scripts/distill-stages.sh "$@"
