#!/bin/bash
# Issue "ArcFlow on FLUX.1": linear-2, gmflow-2 and arcflow-2 distilled from the FLUX-architecture
# Fashion-MNIST teacher (runs/flux-fashion/teacher, `arcflow train-teacher --config
# configs/flux/fashion-teacher.toml`) with configs/flux/fashion-*-2.toml into runs/flux-fashion/NAME.
# Usage: [NAMES="arcflow-2 linear-2"] scripts/flux-fashion-distill.sh [MINUTES] [THREADS]   (see distill-stages.sh)
cd "$(dirname "$0")/.." || exit 1
CONFIGS=configs/flux PREFIX=fashion- RUNS=runs/flux-fashion exec scripts/distill-stages.sh "$@"
