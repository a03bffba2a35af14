"""Mozilla DeepSpeech's error codes (``deepspeech.h``) and the exception the API raises with them.

Mozilla's Python package raises ``RuntimeError("CreateModel failed with 'Incompatible model.'
(0x2003)")``; ``DeepSpeechError`` is a ``RuntimeError`` with the same message, followed by what went
wrong, and keeps the code in ``.code``.
"""
from __future__ import annotations

ERR_OK = 0x0000
ERR_NO_MODEL = 0x1000
ERR_INVALID_ALPHABET = 0x2000
ERR_INVALID_SHAPE = 0x2001
ERR_INVALID_SCORER = 0x2002
ERR_MODEL_INCOMPATIBLE = 0x2003
ERR_SCORER_NOT_ENABLED = 0x2004
ERR_SCORER_UNREADABLE = 0x2005
ERR_SCORER_INVALID_LM = 0x2006
ERR_SCORER_NO_TRIE = 0x2007
ERR_SCORER_INVALID_TRIE = 0x2008
ERR_SCORER_VERSION_MISMATCH = 0x2009
ERR_FAIL_INIT_MMAP = 0x3000
ERR_FAIL_INIT_SESS = 0x3001
ERR_FAIL_INTERPRETER = 0x3002
ERR_FAIL_RUN_SESS = 0x3003
ERR_FAIL_CREATE_STREAM = 0x3004
ERR_FAIL_READ_PROTOBUF = 0x3005
ERR_FAIL_CREATE_SESS = 0x3006
ERR_FAIL_CREATE_MODEL = 0x3007
ERR_FAIL_INSERT_HOTWORD = 0x3008
ERR_FAIL_CLEAR_HOTWORD = 0x3009
ERR_FAIL_ERASE_HOTWORD = 0x3010

MESSAGES = {
    ERR_OK: "No error.",
    ERR_NO_MODEL: "Missing model information.",
    ERR_INVALID_ALPHABET: "Invalid alphabet embedded in model. (Data corruption?)",
    ERR_INVALID_SHAPE: "Invalid model shape.",
    ERR_INVALID_SCORER: "Invalid scorer file.",
    ERR_MODEL_INCOMPATIBLE: "Incompatible model.",
    ERR_SCORER_NOT_ENABLED: "External scorer is not enabled.",
    ERR_SCORER_UNREADABLE: "Could not read scorer file.",
    ERR_SCORER_INVALID_LM: "Could not recognize language model header in scorer.",
    ERR_SCORER_NO_TRIE: "Reached end of scorer file before loading vocabulary trie.",
    ERR_SCORER_INVALID_TRIE: "Invalid magic in trie header.",
    ERR_SCORER_VERSION_MISMATCH: "Scorer file version does not match expected version.",
    ERR_FAIL_INIT_MMAP: "Failed to initialize memory mapped model.",
    ERR_FAIL_INIT_SESS: "Failed to initialize the session.",
    ERR_FAIL_INTERPRETER: "Interpreter failed.",
    ERR_FAIL_RUN_SESS: "Failed to run the session.",
    ERR_FAIL_CREATE_STREAM: "Error creating the stream.",
    ERR_FAIL_READ_PROTOBUF: "Error reading the proto buffer model file.",
    ERR_FAIL_CREATE_SESS: "Failed to create session.",
    ERR_FAIL_CREATE_MODEL: "Could not allocate model state.",
    ERR_FAIL_INSERT_HOTWORD: "Could not insert hot-word.",
    ERR_FAIL_CLEAR_HOTWORD: "Could not clear hot-words.",
    ERR_FAIL_ERASE_HOTWORD: "Could not erase hot-word.",
}


def error_message(code: int) -> str:
    """Mozilla's ``DS_ErrorCodeToErrorMessage``."""
    return MESSAGES.get(code, "Unknown error, please make sure you are using the correct native binary.")


class DeepSpeechError(RuntimeError):
    """``<call> failed with '<Mozilla's message>' (0x....): <details>``."""

    def __init__(self, call: str, code: int, detail: str = ""):
        self.call, self.code, self.detail = call, code, detail
        message = f"{call} failed with '{error_message(code)}' (0x{code:X})"
        super().__init__(f"{message}: {detail}" if detail else message)
