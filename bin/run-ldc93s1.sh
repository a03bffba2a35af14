#!/bin/sh
# Mozilla DeepSpeech's bin/run-ldc93s1.sh: overfit the one utterance LDC93S1 and test on it. Its DeepSpeech.py
# command line is Mozilla's; extra arguments are passed on. Two differences: LDC93S1 is not downloaded but
# spoken by espeak-ng (bin/make_ldc93s1.sh, then Mozilla's importer step, bin/import_ldc93s1.py), and this
# project's virtual environment (.venv) comes first on PATH when no other one is active.
set -xe
if [ ! -f DeepSpeech.py ]; then
    echo "Please make sure you run this from DeepSpeech's top level directory."
    exit 1
fi;

if [ -z "${VIRTUAL_ENV}" ] && [ -x .venv/bin/python ]; then
    PATH="$(pwd)/.venv/bin:$PATH"
fi

if [ ! -f "data/ldc93s1/ldc93s1.csv" ]; then
    echo "Generating (espeak-ng) and preprocessing LDC93S1 example data, saving in ./data/ldc93s1."
    bin/make_ldc93s1.sh ./data/ldc93s1
    python -u bin/import_ldc93s1.py ./data/ldc93s1
fi;

if [ -d "${COMPUTE_KEEP_DIR}" ]; then
    checkpoint_dir=$COMPUTE_KEEP_DIR
else
    # where Mozilla's xdg.save_data_path("deepspeech/ldc93s1") is
    checkpoint_dir="${XDG_DATA_HOME:-$HOME/.local/share}/deepspeech/ldc93s1"
    mkdir -p "$checkpoint_dir"
fi

# Force only one visible device because we have a single-sample dataset
# and when trying to run on multiple devices (like GPUs), this will break
export CUDA_VISIBLE_DEVICES=0

python -u DeepSpeech.py --noshow_progressbar \
  --train_files data/ldc93s1/ldc93s1.csv \
  --test_files data/ldc93s1/ldc93s1.csv \
  --train_batch_size 1 \
  --test_batch_size 1 \
  --n_hidden 100 \
  --epochs 200 \
  --checkpoint_dir "$checkpoint_dir" \
  "$@"
