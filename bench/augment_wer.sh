#!/usr/bin/env bash
# Does augmentation help on noisy speech? The demo configuration trained without and with noise overlay
# + SpecAugment masks, each tested on the clean held-out set and on a noisy copy of it (5-15 dB SNR).
#   bench/augment_wer.sh [DATA_DIR] [RUN_DIR] [SCORER]
# RUN_DIR gets baseline/ and augmented/ checkpoint dirs (an existing one is reused, not retrained: the
# trainer resumes a finished run and trains no further) and results.jsonl with one row per
# (model, test set, decoder). The noise and the noisy test set come from bench/make_noisy_set.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
data=${1:-data/espeak-en}
run=${2:-.cache/bench/augment}
scorer=${3:-runs/demo/kenlm.scorer}
noisy=.cache/bench/noisy
EPOCHS=${EPOCHS:-3}
AUGMENT=(--augment "overlay[p=0.6,source=$noisy/noise_train.csv,snr=12~8]"
         --augment "frequency_mask[p=0.5,n=2,size=15]" --augment "time_mask[p=0.5,n=2,size=60]")
mkdir -p "$run"
[ -f "$noisy/test_noisy.csv" ] || "$PY" bench/make_noisy_set.py --train_csv "$data/train.csv" \
  --test_csv "$data/test.csv" --out_dir "$noisy"

train() {  # name, extra flags...
  local name=$1; shift
  "$PY" DeepSpeech.py --alphabet_config_path "$data/alphabet.txt" --checkpoint_dir "$run/$name" \
    --train_files "$data/train.csv" --dev_files "$data/dev.csv" --train_batch_size 32 --dev_batch_size 32 \
    --epochs "$EPOCHS" --noshow_progressbar "$@"
}
test_one() {  # name, set name, csv, decoder flags...
  local name=$1 set=$2 csv=$3; shift 3
  local decoding=greedy
  case "$*" in *--scorer_path*) decoding=scorer ;; esac
  "$PY" DeepSpeech.py --alphabet_config_path "$data/alphabet.txt" --checkpoint_dir "$run/$name" \
    --test_files "$csv" --test_batch_size 32 --report_count 0 --noshow_progressbar \
    --test_output_file "$run/$name-$set-$decoding.json" "$@"
  "$PY" - "$run/$name-$set-$decoding.json" "$name" "$set" "$decoding" >> "$run/results.jsonl" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))
words = sum(r["word_length"] for r in rows)
chars = sum(r["char_length"] for r in rows)
print(json.dumps({"model": sys.argv[2], "test_set": sys.argv[3], "decoding": sys.argv[4],
                  "wer": sum(r["word_distance"] for r in rows) / words,
                  "cer": sum(r["char_distance"] for r in rows) / chars, "utterances": len(rows)}))
EOF
}

[ -f "$run/baseline/checkpoint" ] || train baseline
[ -f "$run/augmented/checkpoint" ] || train augmented "${AUGMENT[@]}"
rm -f "$run/results.jsonl"
for name in baseline augmented; do
  for set in clean noisy; do
    csv=$data/test.csv
    [ "$set" = noisy ] && csv=$noisy/test_noisy.csv
    test_one "$name" "$set" "$csv" --beam_width 0
    test_one "$name" "$set" "$csv" --beam_width 500 --scorer_path "$scorer"
  done
done
cp "$run/results.jsonl" bench/results/augment_wer.jsonl
"$PY" - "$run/results.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("| model | test set | greedy WER / CER | beam 500 + scorer WER / CER |\n|---|---|---|---|")
for model in ("baseline", "augmented"):
    for test_set in ("clean", "noisy"):
        cells = {r["decoding"]: f"{100 * r['wer']:.1f}% / {100 * r['cer']:.1f}%" for r in rows
                 if r["model"] == model and r["test_set"] == test_set}
        print(f"| {model} | {test_set} | {cells.get('greedy', '')} | {cells.get('scorer', '')} |")
EOF
