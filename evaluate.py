#!/usr/bin/env python3
"""Mozilla's evaluate.py: test a checkpoint on --test_files, as ``DeepSpeech.py --test_files`` without
training (the same flags and report):

    ./evaluate.py --test_files test.csv --checkpoint_dir ck [--scorer_path kenlm.scorer] [--test_output_file r.json]
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "training"))

from deepspeech_training.run import run_evaluate_script  # noqa: E402

if __name__ == "__main__":
    run_evaluate_script()
