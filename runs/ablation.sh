#!/bin/bash
# Ablation students at the interim budget (425 iterations, the shift-1 runs' interim check), one after
# another on one thread: shift 3 (ArcFlow and linear) and nfe 1 (ArcFlow and linear).
cd /work/main
while pgrep -f "distill --config configs/arcflow-2.toml --shift 3" > /dev/null; do sleep 10; done
for spec in "linear-2-shift3 linear-2 --shift 3" "arcflow-1 arcflow-2 --nfe 1" "linear-1 linear-2 --nfe 1"; do
  set -- $spec
  name=$1; cfg=$2; shift 2
  resume=""; [ -f runs/$name/checkpoint.safetensors ] && resume=--resume
  /tmp/arcflow-train -t 1 distill --config configs/$cfg.toml "$@" --iters 425 -o runs/$name $resume -q > runs/$name.log 2>&1
done
