#!/bin/bash
# Issue 25: linear-2, gmflow-2 and arcflow-2 at the reference's budget (10,000 iterations, decay 2,000, batch
# 16, shift 3.2, seed 0) with pi-Flow's recipe details, and two 2,000-iteration arcflow-2 ablations
# (component dropout 0, log-gamma lr multiplier 1), from configs/paper-budget/*.toml into runs/paper-budget/;
# stages of 1,000 iterations taken in turn, an EMA snapshot at each. Resumable; two copies share 2 cores.
# Usage: [NAMES="arcflow-2 gmflow-2"] scripts/paper-budget-distill.sh [MINUTES] [THREADS]   (see distill-stages.sh)
cd "$(dirname "$0")/.." || exit 1
CONFIGS=configs/paper-budget RUNS=runs/paper-budget \
  NAMES="${NAMES:-arcflow-2 gmflow-2 linear-2 arcflow-2-dropout0 arcflow-2-gammalr1}" \
  STAGES="${STAGES:-1000 2000 3000 4000 5000 6000 7000 8000 9000 10000}" exec scripts/distill-stages.sh "$@"
