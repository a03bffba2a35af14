#!/usr/bin/env python3
"""Mozilla DeepSpeech 0.9.3's and Coqui STT 1.4's native runtimes through ctypes, as test oracles.

    rt = Runtime("deepspeech")                     # or "deepspeech-tflite", "stt", or a library path
    with rt.model("replay.pb") as model:
        model.set_beam_width(100)
        model.enable_scorer("kenlm.scorer"); model.set_alpha_beta(0.93, 1.18)
        text = model.stt(audio_int16)
        [best] = model.stt_with_metadata(audio_int16, 1)   # Candidate(text, confidence, tokens)
        with model.create_stream() as stream:
            stream.feed(audio_int16[:8000]); partial = stream.intermediate(); text = stream.finish()

The libraries come from PyPI's wheels (CPython 3.9 `deepspeech` with TensorFlow 2.3 inside,
`deepspeech-tflite`, CPython 3.10 `stt` with its `libkenlm.so`); they are plain C libraries that load
from any Python. `make install` runs ``util/mozilla_runtime.py fetch``, which downloads the wheels
into .cache/reference and unpacks only the shared libraries into .cache/reference/<name>-<version>/.
The versions are pinned here. Every non-zero error code becomes a RuntimeCallError carrying the
code and the runtime's own message (DS_ErrorCodeToErrorMessage).
"""
import ctypes
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

log = logging.getLogger("deepspeech.reference")

DEEPSPEECH_VERSION = "0.9.3"
STT_VERSION = "1.4.0"
REFERENCE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "reference"
# name -> (pip requirement, pip download platform arguments, library files, C prefix)
LIBRARIES = {
    "deepspeech": (f"deepspeech=={DEEPSPEECH_VERSION}", ("39", "manylinux1_x86_64"),
                   ("libdeepspeech.so",), "DS_"),
    "deepspeech-tflite": (f"deepspeech-tflite=={DEEPSPEECH_VERSION}", ("39", "manylinux1_x86_64"),
                          ("libdeepspeech.so",), "DS_"),
    "stt": (f"stt=={STT_VERSION}", ("310", "manylinux_2_24_x86_64"), ("libkenlm.so", "libstt.so"), "STT_"),
}


# deepspeech.h / coqui-stt.h error codes (DS_ERR_* / STT_ERR_*)
ERROR_NAMES = {
    0x1000: "NO_MODEL", 0x2000: "INVALID_ALPHABET", 0x2001: "INVALID_SHAPE", 0x2002: "INVALID_SCORER",
    0x2003: "MODEL_INCOMPATIBLE", 0x2004: "SCORER_NOT_ENABLED", 0x2005: "SCORER_UNREADABLE",
    0x2006: "SCORER_INVALID_LM", 0x2007: "SCORER_NO_TRIE", 0x2008: "SCORER_INVALID_TRIE",
    0x2009: "SCORER_VERSION_MISMATCH", 0x3000: "FAIL_INIT_MMAP", 0x3001: "FAIL_INIT_SESS",
    0x3002: "FAIL_INTERPRETER", 0x3003: "FAIL_RUN_SESS", 0x3004: "FAIL_CREATE_STREAM",
    0x3005: "FAIL_READ_PROTOBUF", 0x3006: "FAIL_CREATE_SESS", 0x3007: "FAIL_CREATE_MODEL",
    0x3008: "FAIL_INSERT_HOTWORD", 0x3009: "FAIL_CLEAR_HOTWORD", 0x3010: "FAIL_ERASE_HOTWORD",
}


class RuntimeLibraryError(RuntimeError):
    """The reference library is missing or does not load."""


class RuntimeCallError(RuntimeError):
    """A runtime call failed: ``code`` (-1 for a NULL result), its ``name`` and the runtime's ``message``."""

    def __init__(self, call: str, code: int, message: str):
        prefix = call.split("_")[0]
        self.name = f"{prefix}_ERR_{ERROR_NAMES[code]}" if code in ERROR_NAMES else None
        named = f" ({self.name})" if self.name else ""
        super().__init__(f"{call} failed with error 0x{code:04X}{named}: {message}" if code >= 0
                         else f"{call} failed: {message}")
        self.call, self.code, self.message = call, code, message


class Token(NamedTuple):
    text: str
    timestep: int
    start_time: float


class Candidate(NamedTuple):
    text: str
    confidence: float
    tokens: tuple


class _TokenMetadata(ctypes.Structure):
    _fields_ = [("text", ctypes.c_char_p), ("timestep", ctypes.c_uint), ("start_time", ctypes.c_float)]


class _CandidateTranscript(ctypes.Structure):
    _fields_ = [("tokens", ctypes.POINTER(_TokenMetadata)), ("num_tokens", ctypes.c_uint),
                ("confidence", ctypes.c_double)]


class _Metadata(ctypes.Structure):
    _fields_ = [("transcripts", ctypes.POINTER(_CandidateTranscript)), ("num_transcripts", ctypes.c_uint)]


def version_dir(name: str, root: Path = REFERENCE_DIR) -> Path:
    version = STT_VERSION if name == "stt" else DEEPSPEECH_VERSION
    return root / f"{name}-{version}"


def library_path(name: str) -> Path:
    """The unpacked library of ``name`` (a key of LIBRARIES)."""
    return version_dir(name) / LIBRARIES[name][2][-1]


_VOIDP, _INT, _UINT, _FLOAT = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_float
_PVOIDP, _SHORTP, _CHARP = ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_short), ctypes.c_char_p
_METAP = ctypes.POINTER(_Metadata)
# suffix -> (restype, argtypes); a char* result is a c_void_p so that it can be freed
_SIGNATURES = {
    "Version": (_VOIDP, []), "ErrorCodeToErrorMessage": (_VOIDP, [_INT]),
    "FreeString": (None, [_VOIDP]), "FreeMetadata": (None, [_METAP]),
    "CreateModel": (_INT, [_CHARP, _PVOIDP]), "FreeModel": (None, [_VOIDP]),
    "GetModelBeamWidth": (_UINT, [_VOIDP]), "SetModelBeamWidth": (_INT, [_VOIDP, _UINT]),
    "GetModelSampleRate": (_INT, [_VOIDP]),
    "EnableExternalScorer": (_INT, [_VOIDP, _CHARP]), "DisableExternalScorer": (_INT, [_VOIDP]),
    "SetScorerAlphaBeta": (_INT, [_VOIDP, _FLOAT, _FLOAT]),
    "AddHotWord": (_INT, [_VOIDP, _CHARP, _FLOAT]), "EraseHotWord": (_INT, [_VOIDP, _CHARP]),
    "ClearHotWords": (_INT, [_VOIDP]),
    "SpeechToText": (_VOIDP, [_VOIDP, _SHORTP, _UINT]),
    "SpeechToTextWithMetadata": (_METAP, [_VOIDP, _SHORTP, _UINT, _UINT]),
    "CreateStream": (_INT, [_VOIDP, _PVOIDP]), "FreeStream": (None, [_VOIDP]),
    "FeedAudioContent": (None, [_VOIDP, _SHORTP, _UINT]),
    "IntermediateDecode": (_VOIDP, [_VOIDP]), "IntermediateDecodeWithMetadata": (_METAP, [_VOIDP, _UINT]),
    "FinishStream": (_VOIDP, [_VOIDP]), "FinishStreamWithMetadata": (_METAP, [_VOIDP, _UINT]),
}


class Runtime:
    """One loaded runtime library: ``name`` is a key of LIBRARIES or a path to libdeepspeech.so/libstt.so."""

    def __init__(self, name: str = "deepspeech"):
        path = library_path(name) if name in LIBRARIES else Path(name)
        self.path = path
        if not path.is_file():
            raise RuntimeLibraryError(f"{path}: no such library (make install fetches Mozilla's and Coqui's "
                                      "runtimes into .cache/reference)")
        self.prefix = "STT_" if path.name.startswith("libstt") else "DS_"
        try:
            if self.prefix == "STT_":  # libstt.so needs libkenlm.so, which sits beside it
                ctypes.CDLL(str(path.parent / "libkenlm.so"), mode=ctypes.RTLD_GLOBAL)
            self.lib = ctypes.CDLL(str(path))
        except OSError as e:
            raise RuntimeLibraryError(f"{path}: does not load ({e})") from None
        for suffix, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(self.lib, self.prefix + suffix)
            fn.restype, fn.argtypes = restype, argtypes

    def fn(self, suffix: str):
        return getattr(self.lib, self.prefix + suffix)

    def take_string(self, pointer) -> str | None:
        """A char* returned by the runtime, as str, freed with *_FreeString; None for NULL."""
        if not pointer:
            return None
        try:
            return ctypes.string_at(pointer).decode("utf-8", errors="replace")
        finally:
            self.fn("FreeString")(pointer)

    def take_metadata(self, pointer) -> list[Candidate] | None:
        """A Metadata* as a list of Candidates, freed with *_FreeMetadata; None for NULL."""
        if not pointer:
            return None
        try:
            meta = pointer.contents
            candidates = []
            for i in range(meta.num_transcripts):
                transcript = meta.transcripts[i]
                raw = [transcript.tokens[j] for j in range(transcript.num_tokens)]
                tokens = tuple(Token(t.text.decode("utf-8", errors="replace"), t.timestep, t.start_time) for t in raw)
                # the text from the tokens' bytes together: a bytes-output model's tokens are single bytes
                text = b"".join(t.text for t in raw).decode("utf-8", errors="replace")
                candidates.append(Candidate(text, transcript.confidence, tokens))
            return candidates
        finally:
            self.fn("FreeMetadata")(pointer)

    def version(self) -> str:
        return self.take_string(self.fn("Version")())

    def error_message(self, code: int) -> str:
        return self.take_string(self.fn("ErrorCodeToErrorMessage")(code))

    def check(self, suffix: str, code: int) -> None:
        if code != 0:
            raise RuntimeCallError(self.prefix + suffix, code, self.error_message(code))

    def model(self, model_path) -> "Model":
        return Model(self, model_path)


def _audio(audio) -> tuple:
    samples = np.ascontiguousarray(audio, dtype=np.int16)
    return samples, samples.ctypes.data_as(_SHORTP), len(samples)


class _Handle:
    """A runtime object freed by ``close()`` or at the end of a with-block (``FREE``: its *_Free call)."""

    FREE = ""
    rt: "Runtime"
    handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self.handle:
            self.rt.fn(self.FREE)(self.handle)
            self.handle = None


class Model(_Handle):
    """*_CreateModel on ``model_path``; close() (or the with-block) frees it."""

    FREE = "FreeModel"

    def __init__(self, runtime: Runtime, model_path):
        self.rt, self.path = runtime, str(model_path)
        handle = ctypes.c_void_p()
        runtime.check("CreateModel", runtime.fn("CreateModel")(self.path.encode(), ctypes.byref(handle)))
        self.handle = handle

    def _call(self, suffix: str, *args) -> None:
        self.rt.check(suffix, self.rt.fn(suffix)(self.handle, *args))

    def beam_width(self) -> int:
        return self.rt.fn("GetModelBeamWidth")(self.handle)

    def set_beam_width(self, width: int) -> None:
        self._call("SetModelBeamWidth", width)

    def sample_rate(self) -> int:
        return self.rt.fn("GetModelSampleRate")(self.handle)

    def enable_scorer(self, scorer_path) -> None:
        self._call("EnableExternalScorer", str(scorer_path).encode())

    def disable_scorer(self) -> None:
        self._call("DisableExternalScorer")

    def set_alpha_beta(self, alpha: float, beta: float) -> None:
        self._call("SetScorerAlphaBeta", alpha, beta)

    def add_hot_word(self, word: str, boost: float) -> None:
        self._call("AddHotWord", word.encode(), boost)

    def erase_hot_word(self, word: str) -> None:
        self._call("EraseHotWord", word.encode())

    def clear_hot_words(self) -> None:
        self._call("ClearHotWords")

    def stt(self, audio) -> str:
        """*_SpeechToText on int16 samples at the model's sample rate."""
        _keep, pointer, n = _audio(audio)
        text = self.rt.take_string(self.rt.fn("SpeechToText")(self.handle, pointer, n))
        if text is None:
            raise RuntimeCallError(self.rt.prefix + "SpeechToText", -1, "returned NULL")
        return text

    def stt_with_metadata(self, audio, num_results: int = 1) -> list[Candidate]:
        _keep, pointer, n = _audio(audio)
        result = self.rt.take_metadata(self.rt.fn("SpeechToTextWithMetadata")(self.handle, pointer, n, num_results))
        if result is None:
            raise RuntimeCallError(self.rt.prefix + "SpeechToTextWithMetadata", -1, "returned NULL")
        return result

    def create_stream(self) -> "Stream":
        return Stream(self)


class Stream(_Handle):
    """*_CreateStream; finish()/finish_with_metadata() end it, close() frees an unfinished one."""

    FREE = "FreeStream"

    def __init__(self, model: Model):
        self.rt = model.rt
        handle = ctypes.c_void_p()
        self.rt.check("CreateStream", self.rt.fn("CreateStream")(model.handle, ctypes.byref(handle)))
        self.handle = handle

    def _live(self, call: str):
        if not self.handle:
            raise RuntimeCallError(self.rt.prefix + call, -1, "the stream is already finished")
        return self.handle

    def feed(self, audio) -> None:
        _keep, pointer, n = _audio(audio)
        self.rt.fn("FeedAudioContent")(self._live("FeedAudioContent"), pointer, n)

    def intermediate(self) -> str:
        return self.rt.take_string(self.rt.fn("IntermediateDecode")(self._live("IntermediateDecode")))

    def intermediate_with_metadata(self, num_results: int = 1) -> list[Candidate]:
        handle = self._live("IntermediateDecodeWithMetadata")
        return self.rt.take_metadata(self.rt.fn("IntermediateDecodeWithMetadata")(handle, num_results))

    def finish(self) -> str:
        """*_FinishStream: the final transcript; the runtime frees the stream."""
        handle, self.handle = self._live("FinishStream"), None
        return self.rt.take_string(self.rt.fn("FinishStream")(handle))

    def finish_with_metadata(self, num_results: int = 1) -> list[Candidate]:
        handle, self.handle = self._live("FinishStreamWithMetadata"), None
        return self.rt.take_metadata(self.rt.fn("FinishStreamWithMetadata")(handle, num_results))


def fetch(dest: Path = REFERENCE_DIR, python: str = sys.executable) -> None:
    """Download the pinned wheels into ``dest`` with pip and unpack their shared libraries."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, (requirement, (py_version, platform), files, _prefix) in LIBRARIES.items():
        target = version_dir(name, dest)
        if all((target / f).is_file() for f in files):
            continue
        subprocess.run([python, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "--python-version", py_version, "--platform", platform, "-d", str(dest), requirement],
                       check=True)
        dist = requirement.split("==")[0].replace("-", "_")
        [wheel] = [w for w in dest.glob(f"{dist}-{requirement.split('==')[1]}-*.whl")]
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                if os.path.basename(member) in files:
                    (target / os.path.basename(member)).write_bytes(zf.read(member))
        log.info("%s: unpacked %s into %s", wheel.name, ", ".join(files), target)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args[:1] == ["fetch"]:
        try:
            fetch(Path(args[1]) if len(args) > 1 else REFERENCE_DIR)
        except (subprocess.CalledProcessError, OSError, ValueError) as e:
            print(f"util/mozilla_runtime.py fetch: {e}", file=sys.stderr)
            return 1
        return 0
    if args[:1] == ["versions"]:
        for name in LIBRARIES:
            try:
                print(f"{name}: {Runtime(name).version()} ({library_path(name)})")
            except RuntimeLibraryError as e:
                print(f"{name}: {e}")
        return 0
    print("usage: util/mozilla_runtime.py fetch [DIR] | versions", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
