#!/bin/sh
# Training on GPU: demo and 38M-parameter models, float32 / mixed float16 / mixed bfloat16, with and
# without XLA, batch sizes doubling from 8 until out of memory. Rows: bench/results/train_gpu.jsonl,
# plot: bench/results/train_gpu.png. Extra arguments go to bench/train_gpu.py (e.g. --configs demo).
set -e
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p bench/results
"$PY" bench/train_gpu.py --configs demo ds2_38m --min_batch 8 --steps 20 --warmup 5 \
  --output bench/results/train_gpu.jsonl --plot bench/results/train_gpu.png "$@"
