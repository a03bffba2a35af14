"""The project's one logger.

Every module logs through ``log`` (``logging.getLogger("deepspeech")``); entry points call
``setup_logging`` once with Mozilla's ``--log_level`` (0 DEBUG, 1 INFO, 2 WARNING, 3 ERROR).
"""
import logging
import os
import sys

log = logging.getLogger("deepspeech")

_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}


def setup_logging(level: int = 1) -> None:
    """Configure the logger for a command-line run (idempotent)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", str(max(level, 1) if level < 3 else 3))
    log.setLevel(_LEVELS.get(level, logging.INFO))
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        log.addHandler(handler)
    log.propagate = False
    # TensorFlow's Python side logs through absl; keep its INFO chatter out of the user's way.
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING if level <= 1 else absl_logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
