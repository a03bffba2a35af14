"""Deep Speech 2 on TensorFlow 2 / Keras 3 with the Mozilla DeepSpeech workflow."""
from pathlib import Path

__version__ = (Path(__file__).resolve().parent / "VERSION").read_text().strip()
