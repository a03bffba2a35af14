#!/bin/sh
# Generates Mozilla DeepSpeech's data/smoke_test/ (what its bin/run-tc-*.sh CI scripts read) from nothing but
# espeak-ng, the King James Bible (Debian bible-kjv) and this project's tools; Mozilla commits these files,
# this project builds them:
#   LDC93S1.wav/.txt, ldc93s1.csv    the one utterance (bin/make_ldc93s1.sh, bin/import_ldc93s1.py)
#   LDC93S1_pcms16le_{1_16000,1_8000,2_44100}.wav   the same at other rates and channel counts
#   vocab.txt                        the LM text: that sentence, then Genesis 1-11, normalized
#   vocab.pruned.txt                 the scorer's vocabulary, a word a line
#   vocab.pruned.bytes.txt           the same, its characters separated by spaces
#   pruned_lm.scorer                 a word scorer for data/alphabet.txt (data/lm/generate_lm.py, generate_scorer_package)
#   pruned_lm.bytes.scorer           a character scorer for --bytes_output_mode
#   russian_sample_data/{alphabet.ru,ru.csv,ru.wav}   one Russian utterance (espeak-ng) for transfer learning
# Existing files are kept; delete DIR to start over.
# usage: bin/make_smoke_test.sh [DIR]   (default data/smoke_test; run from the project's top level directory)
set -e
dir=${1:-data/smoke_test}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
if [ -z "$SCORER_TOOL" ]; then
  SCORER_TOOL=$(dirname "$PY")/generate_scorer_package
  [ -x "$SCORER_TOOL" ] || SCORER_TOOL=generate_scorer_package
fi
KENLM_BINS=${KENLM_BINS:-.cache/kenlm/bin}
export PYTHONPATH="$(pwd)/training:$(pwd)/native_client/python:$(pwd)/native_client/ctcdecode${PYTHONPATH:+:$PYTHONPATH}"
for tool in espeak-ng sox bible; do
  command -v "$tool" >/dev/null || { echo "$0: $tool not found (apt-get install espeak-ng sox bible-kjv)" >&2; exit 1; }
done
sentence="she had your dark suit in greasy wash water all year"

bin/make_ldc93s1.sh "$dir"
[ -f "$dir/ldc93s1.csv" ] || "$PY" bin/import_ldc93s1.py "$dir" --log_level 2
[ -f "$dir/LDC93S1_pcms16le_1_16000.wav" ] || cp "$dir/LDC93S1.wav" "$dir/LDC93S1_pcms16le_1_16000.wav"
[ -f "$dir/LDC93S1_pcms16le_1_8000.wav" ] || sox "$dir/LDC93S1.wav" -r 8000 "$dir/LDC93S1_pcms16le_1_8000.wav"
[ -f "$dir/LDC93S1_pcms16le_2_44100.wav" ] || sox "$dir/LDC93S1.wav" -r 44100 -c 2 "$dir/LDC93S1_pcms16le_2_44100.wav"

if [ ! -f "$dir/vocab.txt" ]; then
  { echo "$sentence"
    bible -f Gen1:1-Gen11:32 | cut -d' ' -f2- | tr 'A-Z' 'a-z' | tr -c "a-z'\n" ' ' | tr -s ' ' | sed 's/^ //; s/ $//'
  } > "$dir/vocab.txt.tmp"
  mv "$dir/vocab.txt.tmp" "$dir/vocab.txt"
fi

lm=$(mktemp -d)
trap 'rm -rf "$lm"' EXIT
build_lm() {  # OUT [--character_level]: a 3-gram KenLM binary and its vocabulary (every token) in OUT
  "$PY" data/lm/generate_lm.py --input_txt "$dir/vocab.txt" --output_dir "$1" --top_k 100000 --arpa_order 3 \
    --max_arpa_memory 10% --arpa_prune "0|0|1" --binary_a_bits 255 --binary_q_bits 8 --binary_type trie \
    --discount_fallback --kenlm_bins "$KENLM_BINS" $2 >"$1.log" 2>&1 || { cat "$1.log" >&2; exit 1; }
}
if [ ! -f "$dir/pruned_lm.scorer" ]; then
  build_lm "$lm/words"
  tr -s ' \n' '\n' < "$lm/words/vocab-100000.txt" | grep -v '^$' > "$dir/vocab.pruned.txt"
  sed 's/./& /g; s/ $//' "$dir/vocab.pruned.txt" > "$dir/vocab.pruned.bytes.txt"
  "$SCORER_TOOL" --alphabet data/alphabet.txt --lm "$lm/words/lm.binary" --vocab "$lm/words/vocab-100000.txt" \
    --package "$dir/pruned_lm.scorer" --default_alpha 0.931289039105002 --default_beta 1.1834137581510284 >/dev/null
fi
if [ ! -f "$dir/pruned_lm.bytes.scorer" ]; then
  build_lm "$lm/chars" --character_level
  "$SCORER_TOOL" --lm "$lm/chars/lm.binary" --vocab "$lm/chars/vocab-100000.txt" --force_bytes_output_mode \
    --package "$dir/pruned_lm.bytes.scorer" --default_alpha 0.931289039105002 --default_beta 1.1834137581510284 >/dev/null
fi

ru="$dir/russian_sample_data"
mkdir -p "$ru"
ru_text="бедняга ребят на его месте должен был быть я"
if [ ! -f "$ru/ru.wav" ]; then
  espeak-ng -v ru -w "$ru/ru.espeak.wav" "$ru_text"
  sox "$ru/ru.espeak.wav" -r 16000 -c 1 -b 16 -e signed-integer "$ru/ru.wav"
  rm -f "$ru/ru.espeak.wav"
fi
[ -f "$ru/ru.csv" ] || printf 'wav_filename,wav_filesize,transcript\nru.wav,0,%s\n' "$ru_text" > "$ru/ru.csv"
if [ ! -f "$ru/alphabet.ru" ]; then
  { echo " "; for c in а б в г д е ё ж з и й к л м н о п р с т у ф х ц ч ш щ ъ ы ь э ю я; do echo "$c"; done
  } > "$ru/alphabet.ru"
fi
