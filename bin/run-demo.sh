#!/usr/bin/env bash
# The demo behind `make demo`: train Deep Speech 2 on the espeak-ng corpus and test it on held-out
# sentences with greedy decoding; then build a KenLM scorer from the corpus text (every sentence but
# dev and test) and test again with the beam search and the scorer; finally export a TFLite model and
# transcribe a held-out clip with the `deepspeech` client.
#   bin/run-demo.sh [DATA_DIR] [CHECKPOINT_DIR] [extra DeepSpeech.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
data=${1:-data/espeak-en}
checkpoints=${2:-runs/demo/checkpoints}
shift $(( $# > 2 ? 2 : $# ))
run=$(dirname "$checkpoints")
mkdir -p "$run"
common=(--alphabet_config_path "$data/alphabet.txt" --checkpoint_dir "$checkpoints" --test_batch_size 32
        --test_files "$data/test.csv" --report_count 3)
echo "== Training, then testing with greedy decoding (no language model)"
"$PY" DeepSpeech.py "${common[@]}" --beam_width 0 \
  --train_files "$data/train.csv" --dev_files "$data/dev.csv" \
  --summary_dir "$run/summaries" --test_output_file "$run/test_results_greedy.json" \
  --train_batch_size 32 --dev_batch_size 32 --epochs "${DEMO_EPOCHS:-3}" "$@"
echo "Training curves: $checkpoints/training_curves.png"
echo "== Building a 4-gram KenLM scorer from $data/lm.txt"
"$PY" data/lm/generate_lm.py --input_txt "$data/lm.txt" --output_dir "$run/lm" --top_k 1000 \
  --arpa_order 4 --max_arpa_memory 20% --arpa_prune "0|0|1" --binary_a_bits 255 --binary_q_bits 8 \
  --binary_type trie --discount_fallback
"$(dirname "$PY")/generate_scorer_package" --alphabet "$data/alphabet.txt" --lm "$run/lm/lm.binary" \
  --vocab "$run/lm/vocab-1000.txt" --package "$run/kenlm.scorer" --default_alpha 0.931289039105002 \
  --default_beta 1.1834137581510284
echo "== Testing with beam search and the scorer"
"$PY" DeepSpeech.py "${common[@]}" --scorer_path "$run/kenlm.scorer" --beam_width 1024 \
  --test_output_file "$run/test_results.json" "$@"
echo "== Exporting a TFLite model and transcribing a held-out clip with the deepspeech client"
"$PY" DeepSpeech.py --checkpoint_dir "$checkpoints" --alphabet_config_path "$data/alphabet.txt" \
  --export_dir "$run/export" --export_tflite --export_quantize dynamic --remove_export
clip=$(sed -n 2p "$data/test.csv" | cut -d, -f1)
echo "Reference: $(sed -n 2p "$data/test.csv" | cut -d, -f3-)"
"$(dirname "$PY")/deepspeech" --model "$run/export/output_graph.tflite" --scorer "$run/kenlm.scorer" \
  --audio "$data/$clip"
