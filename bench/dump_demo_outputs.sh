#!/usr/bin/env bash
# The model outputs the decoder benchmarks share (bench/ctc_decode.sh, bench/decoder_parity.sh), dumped once:
# .cache/bench/clean.npz from the checkpoint the trainer loads and .cache/bench/noisy.npz from NOISY_CHECKPOINT,
# both over DATA_DIR/test.csv.
#   bench/dump_demo_outputs.sh CHECKPOINT_DIR DATA_DIR NOISY_CHECKPOINT
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
checkpoints=$1 data=$2 noisy=$3 work=.cache/bench
mkdir -p "$work"
for set in clean noisy; do
  if [ ! -f "$work/$set.npz" ]; then
    extra=()
    [ "$set" = noisy ] && extra=(--dump_checkpoint "$noisy")
    "$PY" bench/dump_logits.py --checkpoint_dir "$checkpoints" --alphabet_config_path "$data/alphabet.txt" \
      --test_files "$data/test.csv" --test_batch_size 32 --dump_to "$work/$set.npz" "${extra[@]}"
  fi
done
