#!/usr/bin/env bash
# Fine-tuning to a new language: the English demo checkpoint moved to Mandarin characters with
# --drop_source_layers 1 (and, with FREEZE=1, also with --freeze_source_layers 1) against the same model
# trained from scratch: same geometry (the source's model.json), data, steps, learning rate and seed.
#   bench/transfer_cer.sh [SOURCE_CHECKPOINT_DIR] [DATA_DIR] [RUN_DIR]
#   (environment: EPOCHS, LEARNING_RATE, FREEZE=1, DROPS="1 2 4" (one fine-tuned run each), VOCAB characters,
#   UTTERANCES of training audio, OUT for the result files)
# The Mandarin corpus (espeak-ng reading Tang/Song poems, the 400 most frequent characters) is built in
# DATA_DIR the first time; dev CER is measured on 100 held-out renditions of training sentences after every
# epoch, test CER on unseen sentences at the end. Writes bench/results/transfer_cer.jsonl and .png; about
# 30 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
source=${1:-runs/demo/checkpoints}
VOCAB=${VOCAB:-400} UTTERANCES=${UTTERANCES:-1200}
data=${2:-.cache/bench/transfer/cmn$VOCAB-$UTTERANCES}
run=${3:-.cache/bench/transfer/runs}
EPOCHS=${EPOCHS:-6}
[ -f "$source/model.json" ] || { echo "no checkpoint in $source: run 'make demo' or give its directory" >&2; exit 1; }
[ -f "$data/train.csv" ] || "$PY" bin/import_espeak.py "$data" --language cmn --train_utterances "$UTTERANCES" \
  --dev_utterances 100 --test_utterances 50 --vocab_size "$VOCAB" -j "$(nproc)" --log_level 2
"$PY" bench/transfer_cer.py --source "$source" --data "$data" --run "$run" --epochs "$EPOCHS" \
  --batch_size 32 --learning_rate "${LEARNING_RATE:-0.001}" ${FREEZE:+--freeze} --drops ${DROPS:-1} \
  --out "${OUT:-bench/results/transfer_cer}"
