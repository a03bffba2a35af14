#!/usr/bin/env bash
# Decoder benchmark: ds_ctcdecoder vs pyctcdecode, same outputs, same KenLM, same alpha/beta, one core.
# Ours runs two ways: Mozilla's defaults and the paper's pruning (cutoff_prob 0.99, cutoff_top_n 40);
# pyctcdecode with its defaults.
#   bench/ctc_decode.sh [CHECKPOINT_DIR] [DATA_DIR] [SCORER]      (defaults: what `make demo` leaves)
# Outputs of the final checkpoint ("clean") and of the first epoch's ("noisy", NOISY_CHECKPOINT) over
# the held-out test set are dumped once; each decoder then runs at every beam width in BEAMS, pinned
# to one core (CORE). pyctcdecode pins numpy<2, so it gets its own environment, .cache/bench-venv.
# Rows: bench/results/ctc_decode.jsonl (appended); table on stdout; plot: bench/results/ctc_decode.png.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
checkpoints=${1:-runs/demo/checkpoints}
data=${2:-data/espeak-en}
scorer=${3:-$(dirname "$checkpoints")/kenlm.scorer}
ALPHA=${ALPHA:-0.931289039105002}
BETA=${BETA:-1.1834137581510284}
BEAMS=${BEAMS:-16,32,64,128,256,500,1024}
NOISY_CHECKPOINT=${NOISY_CHECKPOINT:-train-156}
CORE=${CORE:-1}
work=.cache/bench
rows=bench/results/ctc_decode.jsonl
mkdir -p "$work" bench/results

BENCH_VENV=.cache/bench-venv
if [ ! -f "$BENCH_VENV/.installed" ]; then
  python3 -m venv "$BENCH_VENV"
  "$BENCH_VENV/bin/pip" install -q "pyctcdecode==0.5.0" "numpy<2" "kenlm==0.3.0" "jiwer>=3.0"
  touch "$BENCH_VENV/.installed"
fi

PY="$PY" bench/dump_demo_outputs.sh "$checkpoints" "$data" "$NOISY_CHECKPOINT"
"$PY" bench/ctc_decode.py vocab --scorer "$scorer" --out "$work/unigrams.txt"

common=(--scorer "$scorer" --alpha "$ALPHA" --beta "$BETA" --beams "$BEAMS" --out "$rows")
for set in clean noisy; do
  taskset -c "$CORE" "$PY" bench/ctc_decode.py decode --decoder ours --logits "$work/$set.npz" --set "$set" \
    "${common[@]}"
  taskset -c "$CORE" "$PY" bench/ctc_decode.py decode --decoder ours --logits "$work/$set.npz" --set "$set" \
    --cutoff_prob 0.99 --cutoff_top_n 40 "${common[@]}"
  taskset -c "$CORE" "$BENCH_VENV/bin/python" bench/ctc_decode.py decode --decoder pyctcdecode \
    --logits "$work/$set.npz" --set "$set" --unigrams "$work/unigrams.txt" "${common[@]}"
done
"$PY" bench/ctc_decode.py report --rows "$rows" --png bench/results/ctc_decode.png
