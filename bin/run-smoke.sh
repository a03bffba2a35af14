#!/usr/bin/env bash
# Mozilla's run-ldc93s1.sh for this project: overfit one espeak-ng clip and print its exact transcript.
# Extra arguments are passed to DeepSpeech.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
data=data/smoke
if [ ! -f "$data/train.csv" ]; then
  "$PY" bin/import_espeak.py "$data" --train_utterances 1 --dev_utterances 1 --test_utterances 1 --seed 7 --log_level 2
fi
head -n 2 "$data/train.csv" > "$data/one.csv"
checkpoint_dir=${COMPUTE_KEEP_DIR:-runs/smoke}
"$PY" DeepSpeech.py --train_files "$data/one.csv" --test_files "$data/one.csv" \
  --train_batch_size 1 --test_batch_size 1 --epochs 80 --learning_rate 0.003 --dropout_rate 0 \
  --n_hidden 64 --conv_type 1d --conv_layers 64:5:2 --rnn_layers 1 --load_train init \
  --checkpoint_dir "$checkpoint_dir" --noshow_progressbar --report_count 1 "$@"
wav=$(sed -n 2p "$data/one.csv" | cut -d, -f1)
expected=$(sed -n 2p "$data/one.csv" | cut -d, -f3-)
got=$("$PY" DeepSpeech.py --one_shot_infer "$data/$wav" --checkpoint_dir "$checkpoint_dir" --load_evaluate last 2>/dev/null)
echo "expected: $expected"
echo "got:      $got"
[ "$got" = "$expected" ]
