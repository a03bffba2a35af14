#!/usr/bin/env python3
"""Train, test and run Deep Speech 2 models: ./DeepSpeech.py --helpfull"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "training"))

from deepspeech_training.run import run_script  # noqa: E402

if __name__ == "__main__":
    run_script()
