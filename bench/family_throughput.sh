#!/usr/bin/env bash
# Fine-tuning throughput of the two model families (issue 15): s of audio per second in the steady-state
# (second) epoch of DeepSpeech.py, batch 32, on the first LIMIT (1000) utterances of DATA_DIR/train.csv:
# Mozilla's geometry at n_hidden 2048 fine-tuned from a release-format checkpoint with Mozilla's command
# line, Deep Speech 2 with the demo geometry from scratch, and Mozilla's geometry from scratch at the
# n_hidden with Deep Speech 2's parameter count. All cores (training).
#   bench/family_throughput.sh [DATA_DIR]        (default data/espeak-en)
# Rows: bench/results/family_throughput.jsonl; logs: .cache/bench/family_throughput/*.log; table on stdout.
# LIMIT=N, CONFIGS=a,b,c, N_HIDDEN=2048, EPOCHS=2.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH=$PWD/training:$PWD/native_client/python:$PWD/native_client/ctcdecode${PYTHONPATH:+:$PYTHONPATH}
mkdir -p bench/results
"$PY" bench/family_throughput.py --data_dir "${1:-data/espeak-en}" --limit_train "${LIMIT:-1000}" \
  --configs "${CONFIGS:-a,b,c}" --n_hidden "${N_HIDDEN:-2048}" --epochs "${EPOCHS:-2}" ${OUT:+--out "$OUT"}
