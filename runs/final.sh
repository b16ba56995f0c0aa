#!/bin/bash
# Last measurements of the session, on a quiet machine (run after the full eval and the ablation runs).
cd /work/main
A=build/arcflow
$A eval --teacher models/teacher.safetensors --classifier models/classifier.safetensors \
  --adapter arcflow-2=models/arcflow-2.safetensors --adapter linear-2=models/linear-2.safetensors \
  --adapter arcflow-2-shift3=runs/arcflow-2-shift3/adapter.safetensors --adapter linear-2-shift3=runs/linear-2-shift3/adapter.safetensors \
  --adapter arcflow-1=runs/arcflow-1/adapter.safetensors --adapter linear-1=runs/linear-1/adapter.safetensors \
  -n 100 --teacher-steps 1,2 -o runs/eval-ablation -q > runs/eval-ablation.log 2>&1
$A bench --adapter models/arcflow-2.safetensors -o runs/bench.json > runs/bench.log 2>&1
rm -rf /tmp/dp1 /tmp/dp2
$A distill --config configs/arcflow-2.toml --iters 6 -o /tmp/dp1 -q > runs/dp1.log 2>&1
$A launch -n 2 --master-port 29655 -- distill --config configs/arcflow-2.toml --batch 8 --iters 6 -o /tmp/dp2 -q > runs/dp2.log 2>&1
cp /tmp/dp1/train.jsonl runs/dp1-train.jsonl; cp /tmp/dp2/train.jsonl runs/dp2-train.jsonl
echo done > runs/final.done
