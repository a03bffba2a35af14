#!/usr/bin/env bash
# Build the CTC prefix beam search (src/prefix_search.cc) with KenLM's query code into one shared
# library that ds_ctcdecoder loads with ctypes:
#   native_client/ctcdecode/build.sh KENLM_SOURCE_DIR OUTPUT.so
# KenLM's objects are compiled once into KENLM_SOURCE_DIR/../obj (two at a time).
set -euo pipefail
src=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
obj=$(dirname "$src")/obj
flags=(-O3 -DNDEBUG -DKENLM_MAX_ORDER=6 -std=c++17 -fPIC -w -I"$src")
mkdir -p "$obj"
export obj
compile() { f=$1; o="$obj/$(basename "$(dirname "$f")")_$(basename "$f").o"; [ -f "$o" ] || g++ "${@:2}" -c "$f" -o "$o"; }
export -f compile
find "$src/util" "$src/lm" -maxdepth 2 -name '*.cc' ! -name '*main.cc' ! -name '*test.cc' \
  ! -path '*/wrappers/*' ! -path '*/builder/*' ! -path '*/filter/*' ! -path '*/interpolate/*' ! -path '*/common/*' ! -path '*/stream/*' \
  | xargs -P 2 -I{} bash -c 'compile "$@"' _ {} "${flags[@]}"
g++ "${flags[@]}" -shared "$here/src/prefix_search.cc" "$obj"/*.o -o "$out.tmp" -lpthread
mv "$out.tmp" "$out"
