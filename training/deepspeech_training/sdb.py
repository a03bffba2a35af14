"""Mozilla DeepSpeech 0.9's Sample DataBase (``.sdb``): many samples in one file, read at random.

The layout (integers big-endian; "long" = 8 bytes, "int" = 4 bytes), as its util/sample_collections.py:

    b"SAMPLEDB"
    long  length of the meta data
    JSON  meta data, {"schema": [{"content": "speech", "mime-type": AUDIO TYPE},
                                 {"content": "transcript", "mime-type": "text/plain"}]}
                     (no transcript column in an unlabeled set, for noise)
    long  length of the sample chunk (from the sample count to the end of the last sample)
    long  sample count
    per sample:  int length of the rest of the entry, then per schema column: int length, bytes
    long  length of the index (from the sample count to its end)
    long  sample count
    long  byte offset of each sample's entry

The audio is a WAV file (``audio/wav``) or Mozilla's Opus sample (``application/vnd.mozilla.opus``,
see util/opus.py); transcripts are UTF-8. Samples are numbered from 0 in file order; "x.sdb:17" names
one. The reader loads only the header and the index; each sample is read with one positional read per
field (thread-safe, so tf.data's parallel map shares one open file).
"""
from __future__ import annotations

import functools
import io
import json
import os
import wave
from dataclasses import dataclass

import numpy as np
import soundfile
from deepspeech.audio import resample

from .util import opus

MAGIC = b"SAMPLEDB"
LONG, INT = 8, 4
AUDIO_WAV = "audio/wav"
AUDIO_OPUS = "application/vnd.mozilla.opus"
AUDIO_TYPES = {"wav": AUDIO_WAV, "opus": AUDIO_OPUS}  # --audio-type names
TEXT = "text/plain"
SPEECH, TRANSCRIPT = "speech", "transcript"


class SDBError(ValueError):
    """A file that is not a readable SDB, or a damaged sample; the message names the file."""


def is_sdb_path(path: str) -> bool:
    return str(path).lower().endswith(".sdb")


def _big(value: int, size: int) -> bytes:
    return int(value).to_bytes(size, "big")


def _number(data: bytes) -> int:
    return int.from_bytes(data, "big")


def wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    """int16 PCM [frames] or [frames, channels] -> a plain 16-bit WAV file, as Mozilla's write_wav."""
    pcm = np.asarray(pcm, np.int16)
    pcm = pcm[:, None] if pcm.ndim == 1 else pcm
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(pcm.shape[1])
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(np.ascontiguousarray(pcm).astype("<i2").tobytes())
    return buffer.getvalue()


def encode_audio(pcm: np.ndarray, sample_rate: int, audio_type: str = AUDIO_OPUS,
                 bitrate: int | None = None) -> bytes:
    """int16 PCM -> the bytes of one SDB audio field of ``audio_type`` (a mime type)."""
    if audio_type == AUDIO_OPUS:
        return opus.encode_sample(pcm, sample_rate, bitrate)
    if audio_type == AUDIO_WAV:
        return wav_bytes(pcm, sample_rate)
    raise SDBError(f"unknown SDB audio type {audio_type!r} ({AUDIO_WAV} or {AUDIO_OPUS})")


class SDBWriter:
    """Writes an SDB. ``add`` takes int16 PCM and encodes it; ``add_encoded`` takes the audio field's
    bytes already in ``audio_type``. The index is written by ``close`` (also on leaving a ``with``)."""

    def __init__(self, path: str, audio_type: str = AUDIO_OPUS, bitrate: int | None = None,
                 labeled: bool = True):
        if audio_type not in AUDIO_TYPES.values():
            raise SDBError(f"{path}: unknown SDB audio type {audio_type!r} ({AUDIO_WAV} or {AUDIO_OPUS})")
        self.path, self.audio_type, self.bitrate, self.labeled = path, audio_type, bitrate, labeled
        self.offsets: list[int] = []
        schema = [{"content": SPEECH, "mime-type": audio_type}]
        if labeled:
            schema.append({"content": TRANSCRIPT, "mime-type": TEXT})
        meta = json.dumps({"schema": schema}).encode()  # json's default separators, as Mozilla's
        self._file = open(path, "wb", buffering=1 << 20)
        self._file.write(MAGIC + _big(len(meta), LONG) + meta)
        self._samples_at = self._file.tell()
        self._file.write(bytes(2 * LONG))  # chunk length and sample count, filled in by close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self):
        return len(self.offsets)

    def add(self, pcm: np.ndarray, sample_rate: int, transcript: str | None = None) -> str:
        return self.add_encoded(encode_audio(pcm, sample_rate, self.audio_type, self.bitrate), transcript)

    def add_encoded(self, audio: bytes, transcript: str | None = None) -> str:
        """Append one sample -> its name, "PATH:INDEX"."""
        fields = [audio]
        if self.labeled:
            if transcript is None:
                raise SDBError(f"{self.path}: a labeled SDB needs a transcript for sample {len(self)}")
            fields.append(transcript.encode("utf-8"))
        body = b"".join(_big(len(f), INT) + f for f in fields)
        self.offsets.append(self._file.tell())
        self._file.write(_big(len(body), INT) + body)
        return f"{self.path}:{len(self.offsets) - 1}"

    def close(self) -> None:
        if self._file is None:
            return
        index_at = self._file.tell()
        count = _big(len(self.offsets), LONG)
        index = count + b"".join(_big(o, LONG) for o in self.offsets)
        self._file.write(_big(len(index), LONG) + index)
        self._file.seek(self._samples_at)
        self._file.write(_big(index_at - self._samples_at - LONG, LONG) + count)
        self._file.close()
        self._file = None


@dataclass(frozen=True)
class RecordInfo:
    """What data.py needs of a sample's audio (the fields it reads of soundfile's info)."""
    frames: int
    samplerate: int
    channels: int
    format: str = "SDB"
    subtype: str = ""

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate


class SDBReader:
    """Random access to the samples of an SDB. ``labeled``: True requires transcripts, False ignores
    them, None uses them when the schema has them."""

    def __init__(self, path: str, labeled: bool | None = None):
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except OSError as err:
            raise SDBError(f"{path}: cannot open the SDB ({err.strerror})") from err
        try:
            self.size = os.fstat(self._fd).st_size
            self._read_header(labeled)
        except BaseException:
            self.close()
            raise

    def _read(self, offset: int, size: int, what: str) -> bytes:
        data = os.pread(self._fd, size, offset) if size else b""
        if len(data) < size:
            raise SDBError(f"{self.path}: truncated SDB ({what} at byte {offset} runs past the end of the "
                           f"{self.size}-byte file)")
        return data

    def _read_header(self, labeled):
        if self.size < len(MAGIC) + LONG or os.pread(self._fd, len(MAGIC), 0) != MAGIC:
            raise SDBError(f"{self.path}: not a Sample DataBase (SDB) file (no SAMPLEDB magic)")
        meta_size = _number(self._read(len(MAGIC), LONG, "the meta data length"))
        meta = self._read(len(MAGIC) + LONG, meta_size, "the meta data")
        try:
            self.meta = json.loads(meta.decode("utf-8"))
            self.schema = list(self.meta["schema"])
            columns = [(c["content"], c["mime-type"]) for c in self.schema]
        except (ValueError, TypeError, KeyError) as err:
            raise SDBError(f"{self.path}: unknown SDB schema (the meta data is not Mozilla's "
                           f"{{\"schema\": [...]}}: {err})") from err
        speech = [i for i, (content, kind) in enumerate(columns) if content == SPEECH and kind in
                  AUDIO_TYPES.values()]
        if not speech:
            raise SDBError(f"{self.path}: unknown SDB schema: no speech column of type {AUDIO_WAV} or "
                           f"{AUDIO_OPUS} (columns: {columns})")
        self.speech, self.audio_type = speech[0], columns[speech[0]][1]
        text = [i for i, column in enumerate(columns) if column == (TRANSCRIPT, TEXT)]
        if labeled and not text:
            raise SDBError(f"{self.path}: no transcripts (an unlabeled SDB, columns: {columns})")
        self.transcript_column = text[0] if text and labeled is not False else None
        self._read_index(len(MAGIC) + LONG + meta_size)

    def _read_index(self, samples_at: int):
        chunk = _number(self._read(samples_at, LONG, "the sample chunk length"))
        index_at = samples_at + LONG + chunk
        length, count = (_number(self._read(index_at + i * LONG, LONG, "the index")) for i in range(2))
        written = _number(self._read(samples_at + LONG, LONG, "the sample count"))
        if chunk < LONG or count != written or length != LONG * (count + 1):
            raise SDBError(f"{self.path}: damaged or unfinished SDB (sample count {written}, index of "
                           f"{count} samples and {length} bytes at byte {index_at})")
        raw = self._read(index_at + 2 * LONG, LONG * count, "the index")
        self.offsets = np.frombuffer(raw, ">u8").astype(np.int64)
        if count and (self.offsets.min() < samples_at + 2 * LONG or self.offsets.max() >= index_at):
            raise SDBError(f"{self.path}: damaged SDB index (a sample offset outside the sample chunk)")

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def labeled(self) -> bool:
        return self.transcript_column is not None

    def name(self, index: int) -> str:
        return f"{self.path}:{index}"

    def fields(self, index: int, columns: tuple[int, ...]) -> list[bytes]:
        """The raw bytes of ``columns`` of sample ``index`` (one read per field, none of the others)."""
        if not 0 <= index < len(self):
            raise SDBError(f"{self.path}: no sample {index} (it holds {len(self)})")
        at = int(self.offsets[index])
        end = at + INT + _number(self._read(at, INT, f"sample {index}"))
        at += INT
        found = {}
        for column in range(max(columns) + 1):
            size = _number(self._read(at, INT, f"sample {index}"))
            if at + INT + size > end:
                raise SDBError(f"{self.path}: sample {index} is damaged (a field runs past its entry)")
            if column in columns:
                found[column] = self._read(at + INT, size, f"sample {index}")
            at += INT + size
        return [found[c] for c in columns]

    def audio_bytes(self, index: int) -> bytes:
        return self.fields(index, (self.speech,))[0]

    def transcript(self, index: int) -> str | None:
        if self.transcript_column is None:
            return None
        data = self.fields(index, (self.transcript_column,))[0]
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SDBError(f"{self.name(index)}: transcript is not UTF-8 ({err})") from err

    def _audio_header(self, index: int, size: int) -> bytes:
        """The first ``size`` bytes of a sample's audio field, without reading the rest."""
        at = int(self.offsets[index]) + INT
        for column in range(self.speech):
            at += INT + _number(self._read(at, INT, f"sample {index}"))
        length = _number(self._read(at, INT, f"sample {index}"))
        return self._read(at + INT, min(size, length), f"sample {index}")

    def info(self, index: int) -> RecordInfo:
        """Frames, rate and channels of a sample's audio, from its header."""
        if not 0 <= index < len(self):
            raise SDBError(f"{self.path}: no sample {index} (it holds {len(self)})")
        try:
            if self.audio_type == AUDIO_OPUS:
                frames, rate, channels = opus.sample_header(self._audio_header(index, opus.SAMPLE_HEADER.size))
                return RecordInfo(frames, rate, channels, subtype="OPUS")
            info = soundfile.info(io.BytesIO(self.audio_bytes(index)))
            return RecordInfo(info.frames, info.samplerate, info.channels, subtype=info.subtype)
        except (opus.OpusSampleError, RuntimeError, soundfile.LibsndfileError) as err:
            raise SDBError(f"{self.name(index)}: unreadable audio ({err})") from err

    def pcm(self, index: int) -> tuple[np.ndarray, int]:
        """A sample's audio -> (int16 [frames, channels], sample rate), decoded as Mozilla did."""
        data = self.audio_bytes(index)
        try:
            if self.audio_type == AUDIO_OPUS:
                return opus.decode_sample(data)
            pcm, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
            return pcm, rate
        except (opus.OpusSampleError, RuntimeError, soundfile.LibsndfileError) as err:
            raise SDBError(f"{self.name(index)}: unreadable audio ({err})") from err

    def audio(self, index: int, sample_rate: int) -> np.ndarray:
        """A sample's audio as the trainer reads it: mono float32 in [-1, 1) at ``sample_rate``."""
        if self.audio_type == AUDIO_WAV:  # also WAVs wider than 16 bit, at full precision
            try:
                audio, rate = soundfile.read(io.BytesIO(self.audio_bytes(index)), dtype="float32",
                                             always_2d=True)
            except (RuntimeError, soundfile.LibsndfileError) as err:
                raise SDBError(f"{self.name(index)}: unreadable audio ({err})") from err
        else:
            pcm, rate = self.pcm(index)
            audio = pcm.astype(np.float32) / 32768.0
        return resample(audio.mean(axis=1).astype(np.float32), rate, sample_rate)

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.close()


@functools.lru_cache(maxsize=16)
def _open_cached(path: str, mtime_ns: int, size: int) -> SDBReader:
    return SDBReader(path)


def open_sdb(path: str) -> SDBReader:
    """A shared reader of ``path`` (reopened when the file changes): for tf.data and the data checks."""
    try:
        stat = os.stat(path)
    except OSError as err:
        raise SDBError(f"{path}: cannot open the SDB ({err.strerror})") from err
    return _open_cached(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


def read_audio(path: str, index: int, sample_rate: int) -> np.ndarray:
    """Sample ``index`` of the SDB ``path`` as mono float32 at ``sample_rate`` (for tf.numpy_function)."""
    return open_sdb(path).audio(index, sample_rate)
