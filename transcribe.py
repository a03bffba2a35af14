#!/usr/bin/env python3
"""Mozilla's top-level transcribe.py: runs bin/transcribe.py (the one implementation; same arguments)."""
import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "transcribe.py"),
                   run_name="__main__")
