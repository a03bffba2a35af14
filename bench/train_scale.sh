#!/bin/sh
# Scaling on one machine (CPU): MirroredStrategy over 2 logical CPU devices vs the default strategy, same
# global batch 32, demo geometry, 3 epochs of 320 utterances (the first untimed). One command:
#   sh bench/train_scale.sh            (extra DeepSpeech.py flags after it, e.g. --rnn_type lstm)
set -e
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CORPUS=.cache/bench/scale-en
if [ ! -f "$CORPUS/train.csv" ]; then
  "$PY" bin/import_espeak.py "$CORPUS" --train_utterances 400 --dev_utterances 0 --test_utterances 0 \
    --log_level 2
fi
mkdir -p bench/results
"$PY" bench/train_scale.py --csv "$CORPUS/train.csv" --devices 1 2 --global_batch 32 --limit_train 320 \
  --epochs 3 --output bench/results/train_scale.jsonl -- "$@"
