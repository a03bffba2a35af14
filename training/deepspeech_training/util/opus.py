"""Opus encode/decode round trips for ``--augment codec`` (Mozilla's codec augmentation).

Mozilla encoded with libopus (opuslib) in 60 ms frames at the requested bitrate. This does the same
through ctypes on the system's libopus (a dependency of libsndfile, so installed with it), and
compensates the encoder's look-ahead so the decoded audio stays aligned with the transcript. Without
libopus it falls back to libsndfile's Ogg/Opus, whose bitrate can only be set between 6 and 256 kbit/s
(through its compression level) and which encodes three times slower.

It also writes and reads Mozilla's Opus *sample* (the audio of an .sdb file, its util/audio.py
``write_opus``/``read_opus``): a big-endian header (PCM byte count: 4 bytes, sample rate: 4, channels: 1,
sample width: 1), then per 60 ms frame (the last one zero-padded) a 2-byte packet length and the packet.
Encoded as opuslib did (libopus's int16 ``opus_encode``, application "audio", libopus's default bitrate
unless one is given, packets of at most one frame's PCM byte count); decoded as Mozilla did, keeping the
encoder's look-ahead delay (about 6.5 ms) and cutting the audio to the header's length.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import io
import struct

import numpy as np
import soundfile

APPLICATION_AUDIO = 2049
SET_BITRATE, GET_LOOKAHEAD = 4002, 4027
FRAME_MS = 60  # Mozilla's Opus frame
MAX_PACKET = 4000  # bytes; libopus's recommended output buffer
RATES = (8000, 12000, 16000, 24000, 48000)  # what Opus encodes natively
SNDFILE_BITRATES = (6000, 256000)  # libsndfile's compression level 1.0 .. 0.0, linearly
SAMPLE_HEADER = struct.Struct(">IIBB")  # Mozilla's Opus sample: PCM bytes, rate, channels, sample width
PACKET_LENGTH = struct.Struct(">H")


class OpusSampleError(ValueError):
    """Audio that cannot be coded as, or is not, a valid Opus sample."""


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
    lib.opus_encode.restype = i32  # the int16 calls: Mozilla's SDB samples (opuslib) use these
    lib.opus_encode.argtypes = [pointer, pointer, ctypes.c_int, pointer, i32]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_decode.argtypes = [pointer, pointer, i32, pointer, ctypes.c_int, ctypes.c_int]
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


# --- Mozilla's Opus sample (the audio of an .sdb) --------------------------------------------------------

def _sample_codec_library():
    lib = libopus()
    if lib is None:
        raise OpusSampleError("Opus samples (.sdb audio) need the libopus library, which is not installed")
    return lib


def frame_size(sample_rate: int) -> int:
    """Samples per channel in one of Mozilla's 60 ms Opus frames."""
    return FRAME_MS * sample_rate // 1000


def _check_format(sample_rate: int, channels: int):
    if sample_rate not in RATES:
        raise OpusSampleError(f"Opus works at {', '.join(map(str, RATES))} Hz, not {sample_rate}")
    if channels not in (1, 2):
        raise OpusSampleError(f"Opus samples have 1 or 2 channels, not {channels}")


def encode_sample(pcm: np.ndarray, sample_rate: int, bitrate: int | None = None) -> bytes:
    """int16 PCM [frames] or [frames, channels] -> Mozilla's Opus sample (bytes)."""
    pcm = np.asarray(pcm, np.int16)
    pcm = np.ascontiguousarray(pcm[:, None] if pcm.ndim == 1 else pcm)
    channels = pcm.shape[1]
    _check_format(sample_rate, channels)
    lib = _sample_codec_library()
    error = ctypes.c_int()
    encoder = lib.opus_encoder_create(sample_rate, channels, APPLICATION_AUDIO, ctypes.byref(error))
    if not encoder:
        raise OpusSampleError(f"libopus: cannot create an encoder at {sample_rate} Hz (error {error.value})")
    try:
        if bitrate is not None:
            lib.opus_encoder_ctl(ctypes.c_void_p(encoder), SET_BITRATE, ctypes.c_int32(int(bitrate)))
        frame = frame_size(sample_rate)
        frame_bytes = frame * channels * 2  # opuslib's packet limit: the PCM chunk's byte count
        frames = -(-len(pcm) // frame)
        padded = np.zeros((frames * frame, channels), np.int16)
        padded[:len(pcm)] = pcm
        parts = [SAMPLE_HEADER.pack(pcm.nbytes, sample_rate, channels, 2)]
        packet = ctypes.create_string_buffer(frame_bytes)
        for k in range(frames):
            size = lib.opus_encode(encoder, padded[k * frame:].ctypes.data, frame, packet, frame_bytes)
            if size < 0:
                raise OpusSampleError(f"libopus: encoding failed (error {size})")
            parts += [PACKET_LENGTH.pack(size), packet.raw[:size]]
        return b"".join(parts)
    finally:
        lib.opus_encoder_destroy(encoder)


def sample_header(data: bytes) -> tuple[int, int, int]:
    """-> (frames, sample rate, channels) of an Opus sample, from its header."""
    if len(data) < SAMPLE_HEADER.size:
        raise OpusSampleError(f"{len(data)} bytes: too short for an Opus sample header")
    pcm_bytes, rate, channels, width = SAMPLE_HEADER.unpack_from(data)
    if width != 2:
        raise OpusSampleError(f"Opus sample of {width}-byte samples (only 16-bit ones exist)")
    _check_format(rate, channels)
    return pcm_bytes // (channels * width), rate, channels


def decode_sample(data: bytes) -> tuple[np.ndarray, int]:
    """Mozilla's Opus sample -> (int16 PCM [frames, channels], sample rate)."""
    frames, rate, channels = sample_header(data)
    lib = _sample_codec_library()
    error = ctypes.c_int()
    decoder = lib.opus_decoder_create(rate, channels, ctypes.byref(error))
    if not decoder:
        raise OpusSampleError(f"libopus: cannot create a decoder at {rate} Hz (error {error.value})")
    frame = frame_size(rate)
    out = np.zeros((frames + frame, channels), np.int16)
    position, done = SAMPLE_HEADER.size, 0
    try:
        while done < frames:
            end = position + PACKET_LENGTH.size
            size = PACKET_LENGTH.unpack_from(data, position)[0] if end <= len(data) else -1
            if size < 0 or end + size > len(data):
                raise OpusSampleError(f"Opus sample cut short: {done} of {frames} samples decoded")
            got = lib.opus_decode(decoder, data[end:end + size], size, out[done:].ctypes.data, frame, 0)
            if got < 0:
                raise OpusSampleError(f"Opus sample: a damaged packet at byte {position} (error {got})")
            done, position = done + got, end + size
    finally:
        lib.opus_decoder_destroy(decoder)
    return out[:frames], rate
