#!/usr/bin/env bash
# Streaming server under load (issue 17): Batch Dispatch (--max_batch 32) vs unbatched (--max_batch 1),
# the server pinned to core SERVER_CORE (0), the generator to CLIENT_CORE (1); real-time streams of the
# held-out clips at 10/20/30 concurrent streams, then the capacity search (p98 <= 100 ms, none behind).
#   bench/server_load.sh MODEL [DATA_DIR]      (MODEL: a unidirectional export, e.g. .tflite)
# Rows: bench/results/server_load.jsonl (appended), one JSON line per run, also on stdout.
# SECONDS_PER_RUN (60), CONCURRENCY ("10,20,30"), CHUNK_MS (160), SCORER (none) override.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
model=${1:?usage: bench/server_load.sh MODEL [DATA_DIR]}
data=${2:-data/espeak-en}
export PYTHONPATH=$PWD/training:$PWD/native_client/python:$PWD/native_client/ctcdecode
mkdir -p bench/results
common=(--model "$model" --test_csv "$data/test.csv" --max_batch 32,1 --seconds "${SECONDS_PER_RUN:-60}"
        --chunk_ms "${CHUNK_MS:-160}" --server_core "${SERVER_CORE:-0}" --client_core "${CLIENT_CORE:-1}"
        --out bench/results/server_load.jsonl ${SCORER:+--scorer "$SCORER"})
"$PY" bench/server_load.py "${common[@]}" --concurrency "${CONCURRENCY:-10,20,30}"
"$PY" bench/server_load.py "${common[@]}" --capacity
