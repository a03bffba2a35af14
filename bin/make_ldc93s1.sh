#!/bin/sh
# LDC93S1, offline: Mozilla's bin/import_ldc93s1.py downloads TIMIT's sample LDC93S1 (a woman saying "She had
# your dark suit in greasy wash water all year.") from catalog.ldc.upenn.edu. This project downloads nothing:
# espeak-ng speaks the same sentence into the same layout, DIR/LDC93S1.wav (16 kHz mono 16-bit) and
# DIR/LDC93S1.txt ("0 <samples> She had ..."), which bin/import_ldc93s1.py DIR then imports into ldc93s1.csv.
# Existing files are kept.
# usage: bin/make_ldc93s1.sh DIR
set -e
dir=${1:?usage: bin/make_ldc93s1.sh DIR}
text="She had your dark suit in greasy wash water all year."
for tool in espeak-ng sox soxi; do
  command -v "$tool" >/dev/null || { echo "$0: $tool not found (apt-get install espeak-ng sox)" >&2; exit 1; }
done
mkdir -p "$dir"
if [ ! -f "$dir/LDC93S1.wav" ]; then
  espeak-ng -v en-us -s 150 -w "$dir/LDC93S1.espeak.wav" "$text"
  sox "$dir/LDC93S1.espeak.wav" -r 16000 -c 1 -b 16 -e signed-integer "$dir/LDC93S1.wav"
  rm -f "$dir/LDC93S1.espeak.wav"
fi
if [ ! -f "$dir/LDC93S1.txt" ]; then
  printf '0 %s %s\n' "$(soxi -s "$dir/LDC93S1.wav")" "$text" > "$dir/LDC93S1.txt"
fi
