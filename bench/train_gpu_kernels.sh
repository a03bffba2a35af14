#!/bin/sh
# Recurrent kernels on GPU: the generic loop against cuDNN (--rnn_kernel fused: BatchNorm folded into the
# input weights, CudnnRNNV3 with sequence lengths), demo and 38M-parameter models, and Mozilla 0.9's model
# (its LSTM's canonical weights packed for CudnnRNNV3), float32 and mixed float16, no XLA (cuDNN's op does
# not compile with XLA), batch sizes doubling from 8 until out of memory.
# Rows: bench/results/train_gpu_kernels.jsonl, plot: bench/results/train_gpu_kernels.png.
set -e
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p bench/results
"$PY" bench/train_gpu.py --configs demo ds2_38m mozilla --precisions float32 mixed_float16 --xla off \
  --rnn_kernels generic fused --min_batch 8 --steps 20 --warmup 5 \
  --output bench/results/train_gpu_kernels.jsonl --plot bench/results/train_gpu_kernels.png "$@"
