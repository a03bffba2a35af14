#!/usr/bin/env bash
# Decoder parity: ds_ctcdecoder against Mozilla DeepSpeech 0.9.3's own runtime (libdeepspeech.so, fetched
# by `make install`) on the same model outputs, one core each.
#   bench/decoder_parity.sh [CHECKPOINT_DIR] [DATA_DIR] [SCORERS]     (defaults: what `make demo` leaves)
# SCORERS: comma-separated scorer paths in Mozilla's layout (KenLM binary, 'TRIE' header, OpenFST
# vocabulary), "none" for no scorer; one Mozilla's runtime cannot load is named and skipped.
# Outputs of the final checkpoint ("clean") and of the first epoch's ("noisy", NOISY_CHECKPOINT) over the
# held-out test set are dumped once, shared with bench/ctc_decode.sh. Every configuration
# (BEAMS x scorer x ALPHA_BETA) is decoded by both, pinned to one core (CORE); Mozilla's time has the
# replay graph's overhead (beam 1, no scorer) subtracted.
# Rows: bench/results/decoder_parity.jsonl (appended); differing utterances:
# bench/results/decoder_parity_diffs.jsonl (appended); table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
checkpoints=${1:-runs/demo/checkpoints}
data=${2:-data/espeak-en}
scorers=${3:-none,$(dirname "$checkpoints")/kenlm.scorer}
ALPHA_BETA=${ALPHA_BETA:-0.931289039105002:1.1834137581510284}
BEAMS=${BEAMS:-16,100,500,1024}
NOISY_CHECKPOINT=${NOISY_CHECKPOINT:-train-156}
CORE=${CORE:-1}
LIMIT=${LIMIT:-0}
work=.cache/bench
rows=bench/results/decoder_parity.jsonl
mkdir -p "$work" bench/results

PY="$PY" bench/dump_demo_outputs.sh "$checkpoints" "$data" "$NOISY_CHECKPOINT"

status=0
for set in clean noisy; do
  taskset -c "$CORE" "$PY" bench/decoder_parity.py run --logits "$work/$set.npz" --set "$set" \
    --scorers "$scorers" --alpha_beta "$ALPHA_BETA" --beams "$BEAMS" --limit "$LIMIT" --out "$rows" || status=1
done
"$PY" bench/decoder_parity.py report --rows "$rows"
exit $status
