#!/usr/bin/env bash
# The demo behind `make demo`: train Deep Speech 2 on the espeak-ng corpus, then test it on
# held-out sentences (greedy decoding, no language model) and print WER/CER and transcripts.
#   bin/run-demo.sh [DATA_DIR] [CHECKPOINT_DIR] [extra DeepSpeech.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
data=${1:-data/espeak-en}
checkpoints=${2:-runs/demo/checkpoints}
shift $(( $# > 2 ? 2 : $# ))
mkdir -p "$(dirname "$checkpoints")"
"$PY" DeepSpeech.py \
  --train_files "$data/train.csv" --dev_files "$data/dev.csv" --test_files "$data/test.csv" \
  --alphabet_config_path "$data/alphabet.txt" \
  --checkpoint_dir "$checkpoints" --summary_dir "$(dirname "$checkpoints")/summaries" \
  --test_output_file "$(dirname "$checkpoints")/test_results.json" \
  --train_batch_size 32 --dev_batch_size 32 --test_batch_size 32 \
  --epochs "${DEMO_EPOCHS:-3}" --report_count 3 "$@"
echo "Training curves: $checkpoints/training_curves.png"
