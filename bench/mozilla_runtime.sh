#!/usr/bin/env bash
# Mozilla's model family in Mozilla's runtime (issue 15): one Mozilla-geometry model (random weights,
# n_hidden 2048 as the release, English alphabet) exported by our exporter as .pb, .pbmm, .tflite float32
# and .tflite dynamic-range int8; each loaded and run by our client (deepspeech.Model), by Mozilla's
# libdeepspeech 0.9.3 (TF build: .pb/.pbmm; TFLite build: .tflite) and by Coqui's libstt 1.4 (.tflite),
# each measurement in a fresh process pinned to one core: load time, RSS, RTF of stt() over the first
# CLIPS test clips (beam 500, no scorer), transcripts compared with ours clip by clip.
#   bench/mozilla_runtime.sh [DATA_DIR]          (default data/espeak-en)
# Exports: .cache/bench/mozilla_runtime/n<N_HIDDEN>/ (kept). Rows: bench/results/mozilla_runtime.jsonl
# (rows of the same size, format and runtime replaced); table on stdout. N_HIDDEN=2048 CLIPS=20 CORE=1
# REPEATS=3; FORMATS="pb,tflite dynamic" / RUNTIMES="ours,stt": only those; PEAK=12: layer_6's weights
# x12 (peaked outputs: no near-ties for the beam search, for the transcript comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH=$PWD/training:$PWD/native_client/python:$PWD/native_client/ctcdecode${PYTHONPATH:+:$PYTHONPATH}
mkdir -p bench/results
"$PY" bench/mozilla_runtime.py run --data_dir "${1:-data/espeak-en}" --n_hidden "${N_HIDDEN:-2048}" \
  --clips "${CLIPS:-20}" --core "${CORE:-1}" --repeats "${REPEATS:-3}" ${FORMATS:+--formats "$FORMATS"} \
  ${RUNTIMES:+--runtimes "$RUNTIMES"} ${OUT:+--out "$OUT"} ${PEAK:+--peak "$PEAK"}
