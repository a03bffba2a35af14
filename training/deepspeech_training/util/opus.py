"""Opus encode/decode round trips for ``--augment codec`` (Mozilla's codec augmentation).

Mozilla encoded with libopus (opuslib) in 60 ms frames at the requested bitrate. This does the same
through ctypes on the system's libopus (a dependency of libsndfile, so installed with it), and
compensates the encoder's look-ahead so the decoded audio stays aligned with the transcript. Without
libopus it falls back to libsndfile's Ogg/Opus, whose bitrate can only be set between 6 and 256 kbit/s
(through its compression level) and which encodes three times slower.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import io

import numpy as np
import soundfile

APPLICATION_AUDIO = 2049
SET_BITRATE, GET_LOOKAHEAD = 4002, 4027
FRAME_MS = 60  # Mozilla's Opus frame
MAX_PACKET = 4000  # bytes; libopus's recommended output buffer
RATES = (8000, 12000, 16000, 24000, 48000)  # what Opus encodes natively
SNDFILE_BITRATES = (6000, 256000)  # libsndfile's compression level 1.0 .. 0.0, linearly


@functools.lru_cache(maxsize=1)
def libopus():
    """The libopus C library, or None."""
    name = ctypes.util.find_library("opus")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)  # ctypes releases the GIL in calls: parallel tf.data maps stay parallel
    except OSError:
        return None
    pointer, i32 = ctypes.c_void_p, ctypes.c_int32
    lib.opus_encoder_create.restype = lib.opus_decoder_create.restype = pointer
    lib.opus_encoder_create.argtypes = [i32, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_decoder_create.argtypes = [i32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_encode_float.restype = i32
    lib.opus_encode_float.argtypes = [pointer, pointer, ctypes.c_int, pointer, i32]
    lib.opus_decode_float.restype = ctypes.c_int
    lib.opus_decode_float.argtypes = [pointer, pointer, i32, pointer, ctypes.c_int, ctypes.c_int]
    lib.opus_encoder_destroy.argtypes = lib.opus_decoder_destroy.argtypes = [pointer]
    return lib


def backend() -> str:
    return "libopus" if libopus() else "libsndfile"


def round_trip(audio: np.ndarray, bitrate: int, sample_rate: int) -> np.ndarray:
    """float32 mono audio -> the same length after Opus at ``bitrate`` bit/s."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.size == 0:
        return audio
    if sample_rate not in RATES:
        raise ValueError(f"Opus works at {', '.join(map(str, RATES))} Hz, not {sample_rate}")
    lib = libopus()
    return _libopus_round_trip(lib, audio, int(bitrate), sample_rate) if lib else \
        _sndfile_round_trip(audio, int(bitrate), sample_rate)


def _libopus_round_trip(lib, audio, bitrate, sample_rate):
    error = ctypes.c_int()
    encoder = lib.opus_encoder_create(sample_rate, 1, APPLICATION_AUDIO, ctypes.byref(error))
    decoder = lib.opus_decoder_create(sample_rate, 1, ctypes.byref(error))
    if not encoder or not decoder:
        raise RuntimeError(f"libopus: cannot create a codec at {sample_rate} Hz (error {error.value})")
    try:
        # variadic ctl calls: arguments need explicit C types
        lib.opus_encoder_ctl(ctypes.c_void_p(encoder), SET_BITRATE, ctypes.c_int32(bitrate))
        lookahead = ctypes.c_int32()
        lib.opus_encoder_ctl(ctypes.c_void_p(encoder), GET_LOOKAHEAD, ctypes.byref(lookahead))
        frame = sample_rate * FRAME_MS // 1000
        frames = -(-(audio.size + lookahead.value) // frame)
        padded = np.zeros(frames * frame, np.float32)  # whole frames, zeros after the end as Mozilla
        padded[:audio.size] = audio
        decoded = np.zeros_like(padded)
        packet = ctypes.create_string_buffer(MAX_PACKET)
        for start in range(0, padded.size, frame):
            size = lib.opus_encode_float(encoder, padded[start:].ctypes.data, frame, packet, MAX_PACKET)
            out = decoded[start:].ctypes.data
            if size < 0 or lib.opus_decode_float(decoder, packet, size, out, frame, 0) < 0:
                raise RuntimeError(f"libopus: coding failed at {bitrate} bit/s")
        return decoded[lookahead.value:lookahead.value + audio.size]
    finally:
        lib.opus_encoder_destroy(encoder)
        lib.opus_decoder_destroy(decoder)


def _sndfile_round_trip(audio, bitrate, sample_rate):
    low, high = SNDFILE_BITRATES
    level = min(1.0, max(0.0, (high - bitrate) / (high - low)))
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, sample_rate, format="OGG", subtype="OPUS", compression_level=level)
    buffer.seek(0)
    decoded, _ = soundfile.read(buffer, dtype="float32")
    out = np.zeros_like(audio)
    out[:min(out.size, decoded.size)] = decoded[:out.size]
    return out
