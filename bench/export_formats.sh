#!/usr/bin/env bash
# Export-format benchmark (issue 6): .pb, .pbmm, SavedModel and TFLite fp32/fp16/dynamic/int8 of one
# checkpoint, each measured in fresh processes pinned to one core (CORE): runtime import and model load
# time, RssAnon/RssFile, real-time factor and WER/CER over the held-out set with beam 500 without and
# with the scorer, streaming latency per chunk for a unidirectional ('step') model; the checkpoint's
# own WER through DeepSpeech.py --test_files for reference.
#   bench/export_formats.sh [CHECKPOINT_DIR] [DATA_DIR] [SCORER]      (defaults: what `make demo` leaves)
# Exports: .cache/bench/export_formats/NAME/ (NAME: the checkpoint dir's parent; kept while newer than
# the checkpoint). Rows: bench/results/export_formats.jsonl (this NAME's rows replaced); tables on
# stdout; plot: bench/results/export_formats.png. LIMIT=N: first N test clips only; FORMATS=
# "tflite dynamic,tflite int8": only those (their rows replaced).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
checkpoints=${1:-runs/demo/checkpoints}
data=${2:-data/espeak-en}
scorer=${3:-$(dirname "$checkpoints")/kenlm.scorer}
mkdir -p bench/results
"$PY" bench/export_formats.py run --checkpoint_dir "$checkpoints" --data_dir "$data" --scorer "$scorer" \
  --core "${CORE:-1}" --repeats "${REPEATS:-3}" --limit "${LIMIT:-0}" ${FORMATS:+--formats "$FORMATS"}
