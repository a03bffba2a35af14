#!/bin/sh
# Scaling on one machine (CPU): MirroredStrategy over 2 logical CPU devices vs the default strategy, same
# global batch 32, demo geometry, 3 epochs of 640 utterances (the first untimed); and 2 worker processes on
# 127.0.0.1 (MultiWorkerMirroredStrategy). One command:
#   sh bench/train_scale.sh            (extra DeepSpeech.py flags after it, e.g. --rnn_type lstm)
set -e
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CORPUS=.cache/bench/scale-en-700
if [ ! -f "$CORPUS/train.csv" ]; then
  "$PY" bin/import_espeak.py "$CORPUS" --train_utterances 700 --dev_utterances 0 --test_utterances 0 \
    --log_level 2
fi
mkdir -p bench/results
"$PY" bench/train_scale.py --csv "$CORPUS/train.csv" --devices 1 2 --global_batch 32 --limit_train 640 \
  --epochs 3 --workers 2 --output bench/results/train_scale.jsonl -- "$@"
