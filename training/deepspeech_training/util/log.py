"""The project's one logger.

Every module logs through ``log`` (``logging.getLogger("deepspeech")``); entry points call
``setup_logging`` once with Mozilla's ``--log_level`` (0 DEBUG, 1 INFO, 2 WARNING, 3 ERROR).

Lines worded as Mozilla DeepSpeech's (the ones its CI scripts and users grep: checkpoint loading, epoch
progress, the test report) go through ``mozilla_log``, a child of ``log``: they are logged like every
other line, and with ``setup_logging(..., mozilla_stdout=True)`` also printed on stdout as Mozilla
printed them ("I <message>") when stdout is not where stderr goes, so that Mozilla's
``DeepSpeech.py ... | tee run.log; grep "Loading best validating checkpoint from" run.log`` works.
"""
import logging
import os
import sys

log = logging.getLogger("deepspeech")
mozilla_log = logging.getLogger("deepspeech.mozilla")

_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}
_MOZILLA_PREFIX = {logging.DEBUG: "D", logging.INFO: "I", logging.WARNING: "W", logging.ERROR: "E"}


class _MozillaFormatter(logging.Formatter):
    """Mozilla's prefix_print: every line of the message after its one-letter level."""

    def format(self, record):
        prefix = _MOZILLA_PREFIX.get(record.levelno, "E") + " "
        return prefix + ("\n" + prefix).join(record.getMessage().split("\n"))


def _same_destination(a, b) -> bool:
    try:
        return os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): treat as one
        return True


def setup_logging(level: int = 1, mozilla_stdout: bool = False) -> None:
    """Configure the logger for a command-line run (idempotent). ``mozilla_stdout``: the entry point
    prints no result on stdout, which may then carry Mozilla's log lines (see the module's doc)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", str(max(level, 1) if level < 3 else 3))
    log.setLevel(_LEVELS.get(level, logging.INFO))
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        log.addHandler(handler)
    log.propagate = False
    if mozilla_stdout and not mozilla_log.handlers and not _same_destination(sys.stdout, sys.stderr):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_MozillaFormatter())
        mozilla_log.addHandler(handler)
    # TensorFlow's Python side logs through absl; keep its INFO chatter out of the user's way.
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING if level <= 1 else absl_logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
