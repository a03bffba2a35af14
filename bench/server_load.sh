#!/usr/bin/env bash
# Streaming server under load (issue 17): Batch Dispatch (--max_batch 32) vs unbatched (--max_batch 1),
# the server pinned to core SERVER_CORE (0), the generator to CLIENT_CORE (1); real-time streams of the
# held-out clips at 10/20/30 concurrent streams, the capacity search (p98 <= 100 ms, none behind), the
# overload run (1.5x the Batch Dispatch capacity offered, --max_streams at the capacity: the rest get
# HTTP 503) and the server's RSS over 2,000 sequential connections. With MODEL_HALF_STEPS (the same
# checkpoint exported with --n_steps 8), the table and the capacities again for it.
#   bench/server_load.sh MODEL [DATA_DIR] [MODEL_HALF_STEPS]     (unidirectional exports, e.g. .tflite)
# Rows: bench/results/server_load.jsonl (appended), one JSON line per run, also on stdout.
# SECONDS_PER_RUN (60), CAPACITY_SECONDS (30), CONCURRENCY ("10,20,30"), CHUNK_MS (160), SCORER (none),
# CONNECTIONS (2000), BEAM_WIDTH (the model's), CUTOFF_PROB (0.999), BEAM_THRESHOLD (15), SETTLE_AFTER (100),
# OUT (the rows' file) override.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
model=${1:?usage: bench/server_load.sh MODEL [DATA_DIR] [MODEL_HALF_STEPS]}
data=${2:-data/espeak-en}
half=${3:-}
out=${OUT:-bench/results/server_load.jsonl}
export PYTHONPATH=$PWD/training:$PWD/native_client/python:$PWD/native_client/ctcdecode
mkdir -p bench/results
common=(--test_csv "$data/test.csv" --chunk_ms "${CHUNK_MS:-160}" --server_core "${SERVER_CORE:-0}"
        --client_core "${CLIENT_CORE:-1}" --out "$out" ${SCORER:+--scorer "$SCORER"}
        ${BEAM_WIDTH:+--beam_width "$BEAM_WIDTH"} ${CUTOFF_PROB:+--cutoff_prob "$CUTOFF_PROB"}
        ${BEAM_THRESHOLD:+--beam_threshold "$BEAM_THRESHOLD"} ${SETTLE_AFTER:+--settle_after "$SETTLE_AFTER"})
table_and_capacity() {
  "$PY" bench/server_load.py --model "$1" "${common[@]}" --max_batch 32,1 --seconds "${SECONDS_PER_RUN:-60}" \
    --concurrency "${CONCURRENCY:-10,20,30}"
  "$PY" bench/server_load.py --model "$1" "${common[@]}" --max_batch 32,1 --seconds "${CAPACITY_SECONDS:-30}" \
    --capacity
}
table_and_capacity "$model"
capacity=$("$PY" -c 'import json, sys
print([r for r in map(json.loads, open(sys.argv[1])) if "capacity" in r and r["max_batch"] == 32][-1]["capacity"])' "$out")
"$PY" bench/server_load.py --model "$model" "${common[@]}" --max_batch 32 --seconds "${SECONDS_PER_RUN:-60}" \
  --concurrency $((capacity * 3 / 2)) --max_streams "$capacity"
"$PY" bench/server_load.py --model "$model" "${common[@]}" --max_batch 32 --connections "${CONNECTIONS:-2000}" --no_check
[ -z "$half" ] || table_and_capacity "$half"
