#!/usr/bin/env python3
"""An alias of the top-level evaluate_tflite.py (Mozilla's; the same arguments)."""
import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "evaluate_tflite.py"),
                   run_name="__main__")
