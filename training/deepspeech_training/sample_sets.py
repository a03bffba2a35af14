"""Writing data sets, as Mozilla's bin/data_set_tool.py: a CSV with a folder of WAVs, an SDB, or a tar.

Every writer takes the samples in two steps so the costly one can run on several threads:
``encode(pcm, sample_rate)`` (int16 PCM -> the stored audio's bytes; thread-safe) and then, in order,
``add_encoded(data, transcript)``. Targets by extension:

- ``.csv``: the CSV and one WAV per sample in a folder named after it (``x.csv`` -> ``x/000000.wav``);
- ``.sdb``: Mozilla's Sample DataBase (sdb.py), Opus or WAV audio;
- ``.tar``, ``.tar.gz``, ``.tgz``: Mozilla's layout: a ``samples/`` folder of ``sample00000000.wav``...,
  the ``--include`` files at the root, and ``samples.csv`` (paths relative to the archive's root) last.
"""
from __future__ import annotations

import collections
import csv
import io
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import sdb

TARGET_KINDS = (".csv", ".sdb", ".tar", ".tar.gz", ".tgz")


def target_kind(path: str) -> str | None:
    """The target kind of ``path`` (one of TARGET_KINDS), or None."""
    lower = str(path).lower()
    return next((kind for kind in sorted(TARGET_KINDS, key=len, reverse=True) if lower.endswith(kind)), None)


def _header(labeled: bool) -> list[str]:
    return ["wav_filename", "wav_filesize"] + (["transcript"] if labeled else [])


class CSVSetWriter:
    """A CSV and its folder of 16-bit WAVs (relative paths unless ``absolute_paths``)."""

    def __init__(self, path: str, labeled: bool = True, absolute_paths: bool = False):
        self.path, self.labeled, self.absolute_paths = path, labeled, absolute_paths
        self.folder = path[:-len(".csv")]
        os.makedirs(self.folder, exist_ok=True)
        self._file = open(path, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        self._csv.writerow(_header(labeled))
        self.count = 0

    def encode(self, pcm: np.ndarray, sample_rate: int) -> bytes:
        return sdb.wav_bytes(pcm, sample_rate)

    def add_encoded(self, data: bytes, transcript: str | None = None) -> str:
        wav = os.path.join(self.folder, f"{self.count:06d}.wav")
        with open(wav, "wb") as f:
            f.write(data)
        self.count += 1
        base = os.path.dirname(os.path.abspath(self.path))
        name = os.path.abspath(wav) if self.absolute_paths else os.path.relpath(wav, base)
        self._csv.writerow([name, len(data)] + ([transcript] if self.labeled else []))
        return wav

    def close(self) -> None:
        self._file.close()


class SDBSetWriter(sdb.SDBWriter):
    def encode(self, pcm: np.ndarray, sample_rate: int) -> bytes:
        return sdb.encode_audio(pcm, sample_rate, self.audio_type, self.bitrate)


class TarSetWriter:
    """Mozilla's TarWriter layout: ``samples/`` + ``samples.csv``, WAV audio."""

    def __init__(self, path: str, labeled: bool = True, include: list[str] | None = None):
        self.path, self.labeled = path, labeled
        self._tar = tarfile.open(path, "w:gz" if target_kind(path) in (".tar.gz", ".tgz") else "w")
        folder = tarfile.TarInfo("samples")
        folder.type = tarfile.DIRTYPE
        self._tar.addfile(folder)
        for extra in include or []:
            self._tar.add(extra, arcname=os.path.basename(extra), recursive=False)
        self._rows = io.StringIO()
        self._csv = csv.writer(self._rows)
        self._csv.writerow(_header(labeled))
        self.count = 0

    def encode(self, pcm: np.ndarray, sample_rate: int) -> bytes:
        return sdb.wav_bytes(pcm, sample_rate)

    def add_encoded(self, data: bytes, transcript: str | None = None) -> str:
        name = f"samples/sample{self.count:08d}.wav"
        self.count += 1
        self._add(name, data)
        self._csv.writerow([name, len(data)] + ([transcript] if self.labeled else []))
        return f"{self.path}:{name}"

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        if self._tar is not None:
            self._add("samples.csv", self._rows.getvalue().encode("utf-8"))
            self._tar.close()
            self._tar = None


def open_writer(path: str, labeled: bool = True, audio_type: str = sdb.AUDIO_OPUS, bitrate: int | None = None,
                absolute_paths: bool = False, include: list[str] | None = None):
    """The writer of the target ``path``, by its extension (TARGET_KINDS)."""
    kind = target_kind(path)
    if kind is None:
        raise ValueError(f"{path}: unknown target kind (use {', '.join(TARGET_KINDS)})")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if kind == ".csv":
        return CSVSetWriter(path, labeled, absolute_paths)
    if kind == ".sdb":
        return SDBSetWriter(path, audio_type, bitrate, labeled)
    return TarSetWriter(path, labeled, include)


def ordered_map(function, items, workers: int):
    """``map(function, items)`` on ``workers`` threads, in order, with a bounded number in flight."""
    if workers <= 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
