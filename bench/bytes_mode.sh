#!/usr/bin/env bash
# Mozilla's bytes output mode against a character alphabet on the Mandarin espeak-ng corpus: the same
# data, geometry (but the output layer: 256 byte classes vs alphabet + 1), steps, learning rate and seed;
# test CER greedy and with a character-level scorer (the same KenLM, packaged in each mode).
#   bench/bytes_mode.sh [DATA_DIR] [RUN_DIR]
#   (environment: VOCAB characters, UTTERANCES of training audio, EPOCHS, BEAM, OUT for the result file,
#   GEOMETRY: model and training flags (default: the demo geometry of the flag defaults, batch 32, learning
#   rate 0.001), TRAIN=0 to test the checkpoints of an earlier run again). Tests use the last checkpoint of each run
#   (the best-dev-loss one can be from an early epoch, before CER moves).
# The corpus (espeak-ng reading Tang/Song poems made of the VOCAB most frequent characters) is built in
# DATA_DIR the first time; the LM is trained on the training transcripts only. The two trainings run side
# by side; about 25 minutes on 2 cores with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VOCAB=${VOCAB:-380} UTTERANCES=${UTTERANCES:-2400} EPOCHS=${EPOCHS:-6} BEAM=${BEAM:-100}
data=${1:-.cache/bench/bytes/cmn$VOCAB-$UTTERANCES}
run=${2:-.cache/bench/bytes/runs}
out=${OUT:-bench/results/bytes_mode.txt}
[ -f "$data/train.csv" ] || "$PY" bin/import_espeak.py "$data" --language cmn --train_utterances "$UTTERANCES" \
  --dev_utterances 100 --test_utterances 100 --vocab_size "$VOCAB" -j "$(nproc)" --log_level 2
"$PY" bin/build_alphabet.py --csv "$data/train.csv,$data/dev.csv,$data/test.csv" --output "$data/chars.txt"
cut -d, -f3- "$data/train.csv" | tail -n +2 > "$data/lm.txt"
"$PY" data/lm/generate_lm.py --input_txt "$data/lm.txt" --output_dir "$data/lm" --top_k 100000 \
  --arpa_order 3 --max_arpa_memory 10% --arpa_prune "0|0|0" --binary_a_bits 255 --binary_q_bits 8 \
  --binary_type trie --discount_fallback --kenlm_bins .cache/kenlm/bin --character_level > /dev/null
.venv/bin/generate_scorer_package --alphabet "$data/chars.txt" --lm "$data/lm/lm.binary" \
  --vocab "$data/lm/vocab-100000.txt" --package "$data/chars.scorer" --default_alpha 0.75 --default_beta 1.0
.venv/bin/generate_scorer_package --lm "$data/lm/lm.binary" --vocab "$data/lm/vocab-100000.txt" \
  --package "$data/bytes.scorer" --default_alpha 0.75 --default_beta 1.0 --force_bytes_output_mode
read -r -a geometry <<< "${GEOMETRY:---train_batch_size 32 --dev_batch_size 32 --learning_rate 0.001}"
geometry+=(--random_seed 1 --noshow_progressbar --summary_dir "")
mkdir -p "$(dirname "$out")" "$run"
: > "$out"
labels_of() { if [ "$1" = bytes ]; then echo --bytes_output_mode; else echo --alphabet_config_path "$data/chars.txt"; fi; }
start=$(date +%s)
for mode in chars bytes; do  # both trainings at once (TRAIN=0: test the checkpoints already in RUN_DIR): the same machine share each
  [ "${TRAIN:-1}" = 0 ] && continue
  rm -rf "${run:?}/$mode"
  # shellcheck disable=SC2046
  "$PY" DeepSpeech.py --train_files "$data/train.csv" --dev_files "$data/dev.csv" --epochs "$EPOCHS" \
    $(labels_of $mode) --checkpoint_dir "$run/$mode" "${geometry[@]}" 2> "$run/$mode.train.log" &
done
wait
seconds=$(( $(date +%s) - start ))
for mode in chars bytes; do
  for decoding in greedy scorer; do
    if [ "$decoding" = greedy ]; then dec=(--beam_width 0); else dec=(--beam_width "$BEAM" --scorer_path "$data/$mode.scorer"); fi
    # shellcheck disable=SC2046
    "$PY" DeepSpeech.py --test_files "$data/test.csv" $(labels_of $mode) --checkpoint_dir "$run/$mode" \
      --load_evaluate last "${dec[@]}" --test_output_file "$run/$mode.$decoding.json" --noshow_progressbar --report_count 1 \
      2> "$run/$mode.$decoding.log"
    result=$(grep -o "Test on test.csv - WER: [0-9.]*, CER: [0-9.]*" "$run/$mode.$decoding.log")
    dev=$(grep -o "dev .* CER [0-9.]*%" "$run/$mode.train.log" | tail -1 | grep -o "CER [0-9.]*%")
    echo "$mode $decoding (both trainings: ${seconds}s; last dev greedy $dev) $result" | tee -a "$out"
  done
done
