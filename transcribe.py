#!/usr/bin/env python3
"""Mozilla's transcribe.py: long recordings split at pauses (webrtcvad) and transcribed into .tlog files,
with the training checkpoint (Mozilla's flags) or an export (--model):

    ./transcribe.py --checkpoint_dir ck [--scorer_path kenlm.scorer] --src talk.wav [--dst talk.tlog]
    ./transcribe.py --checkpoint_dir ck --src recordings/ --recursive [--force] [--vad_aggressiveness 3]
    ./transcribe.py --model export/output_graph.tflite --scorer kenlm.scorer --src list.catalog
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "training"))

from deepspeech_training.transcribe import run_script  # noqa: E402

if __name__ == "__main__":
    run_script()
