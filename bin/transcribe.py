#!/usr/bin/env python3
"""Transcribe long recordings, or folders of them, with an exported model (Mozilla's transcribe.py).

    bin/transcribe.py --model export/output_graph.tflite --scorer kenlm.scorer --src talk.wav
    bin/transcribe.py --model ... --src recordings/ --recursive [--force]
    bin/transcribe.py --model ... --src list.catalog

Voice activity detection (webrtcvad, 30 ms frames, ``--vad_aggressiveness`` 0-3) splits the audio at
pauses; each voiced segment is transcribed on its own. The result, ``<audio>.tlog`` beside each file
(or ``--dst`` for a single file), is Mozilla's JSON list of segments ``{"start", "end", "transcript"}``
(milliseconds), each with its ``words`` (``word``, ``start_time`` and ``duration`` in seconds from the
start of the file) added.

A ``.catalog`` is Mozilla's JSON list of ``{"audio": ..., "tlog": ...}`` entries (paths relative to the
catalog). Unlike Mozilla's, this uses the export (not a training checkpoint), and reads any audio format
at any rate. Existing .tlog files are kept unless ``--force``.
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import logging
import os
import sys

import numpy as np

from deepspeech import Model
from deepspeech.audio import resample
from deepspeech.client import USER_ERRORS, load_samples, words_from_candidate_transcript

log = logging.getLogger("transcribe")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")
VAD_RATES = (8000, 16000, 32000, 48000)
FRAME_MS = 30
PADDING_FRAMES = 10  # 300 ms: the window in which voiced (unvoiced) frames start (end) a segment
THRESHOLD = 0.5  # ... when more than this share of the window's frames are voiced (unvoiced)


class UsageError(ValueError):
    pass


def vad_segments(samples: np.ndarray, rate: int, aggressiveness: int) -> list[tuple[int, int]]:
    """Voiced stretches of int16 ``samples`` as (first sample, end sample) pairs.

    A segment opens when more than half of the last 10 frames are voiced (it starts at the first of
    them) and closes when more than half of the last 10 are unvoiced.
    """
    import webrtcvad

    vad_rate = rate if rate in VAD_RATES else 16000
    audio = samples if vad_rate == rate else _resample_int16(samples, rate, vad_rate)
    frame = vad_rate * FRAME_MS // 1000
    vad = webrtcvad.Vad(int(aggressiveness))
    window = collections.deque(maxlen=PADDING_FRAMES)
    segments, start = [], None
    for index in range(len(audio) // frame):
        voiced = vad.is_speech(audio[index * frame:(index + 1) * frame].tobytes(), vad_rate)
        window.append(voiced)
        if start is None and sum(window) > THRESHOLD * PADDING_FRAMES:
            start = index + 1 - len(window)
            window.clear()
        elif start is not None and len(window) - sum(window) > THRESHOLD * PADDING_FRAMES:
            segments.append((start, index + 1))
            start = None
            window.clear()
    if start is not None:
        segments.append((start, len(audio) // frame + (1 if len(audio) % frame else 0)))
    scale = rate / vad_rate
    return [(int(a * frame * scale), min(len(samples), int(b * frame * scale))) for a, b in segments]


def _resample_int16(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    audio = resample(samples.astype(np.float32) / 32768.0, rate, target)
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def transcribe_file(model: Model, src: str, aggressiveness: int) -> list[dict]:
    rate = model.sampleRate()
    samples, _ = load_samples(src, rate)
    segments = []
    for first, end in vad_segments(samples, rate, aggressiveness):
        best = model.sttWithMetadata(samples[first:end], 1).transcripts[0]
        offset = first / rate
        words = [{**w, "start_time": round(w["start_time"] + offset, 4)}
                 for w in words_from_candidate_transcript(best)]
        segments.append({"start": round(1000 * first / rate), "end": round(1000 * end / rate),
                         "transcript": "".join(t.text for t in best.tokens), "words": words})
    return segments


def jobs(args) -> list[tuple[str, str]]:
    """(audio, tlog) pairs to transcribe, as Mozilla's: a file, a folder, or a .catalog."""
    src = os.path.abspath(args.src)
    if os.path.isdir(src):
        if args.dst:
            raise UsageError("--dst is not supported in folder mode (each .tlog goes beside its audio)")
        pattern = os.path.join(glob.escape(src), "**", "*") if args.recursive else os.path.join(glob.escape(src), "*")
        files = sorted(p for p in glob.glob(pattern, recursive=args.recursive)
                       if p.lower().endswith(AUDIO_EXTENSIONS) and os.path.isfile(p))
        pairs = [(p, os.path.splitext(p)[0] + ".tlog") for p in files]
        return [pair for pair in pairs if args.force or not os.path.exists(pair[1])]
    if not os.path.isfile(src):
        raise UsageError(f"{args.src}: no such file or folder")
    if src.endswith(".catalog"):
        return _catalog_jobs(src, args)
    dst = os.path.abspath(args.dst) if args.dst else os.path.splitext(src)[0] + ".tlog"
    if os.path.exists(dst) and not args.force:
        raise UsageError(f'Destination file "{dst}" already existing - use --force for overwriting')
    if not os.path.isdir(os.path.dirname(dst)):
        raise UsageError(f"Missing destination directory {os.path.dirname(dst)}")
    return [(src, dst)]


def _catalog_jobs(src: str, args) -> list[tuple[str, str]]:
    if args.dst:
        raise UsageError("Parameter --dst not supported if --src points to a catalog")
    base = os.path.dirname(src)
    try:
        with open(src, encoding="utf-8") as f:
            pairs = [(os.path.join(base, e["audio"]), os.path.join(base, e["tlog"])) for e in json.load(f)]
    except (ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{src}: not a catalog (a JSON list of {{audio, tlog}} entries): {err}") from None
    missing = [a for a, _ in pairs if not os.path.isfile(a)]
    if missing:
        raise UsageError(f"Missing source file(s) in catalog: {missing[:3]}")
    if not args.force and any(os.path.exists(t) for _, t in pairs):
        raise UsageError("Destination file(s) from catalog already existing, use --force for overwriting")
    return pairs


def write_tlog(path: str, segments: list[dict]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(segments, f, indent=2, ensure_ascii=False)
    os.replace(tmp, path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Transcribe long audio files with voice activity detection")
    parser.add_argument("--src", required=True, help="audio file, folder of audio files, or .catalog file")
    parser.add_argument("--dst", help="the .tlog of a single --src file (default: beside it)")
    parser.add_argument("--model", required=True, help="exported model (.tflite, .pb, .pbmm, SavedModel)")
    parser.add_argument("--scorer", help="external scorer")
    parser.add_argument("--beam_width", type=int, help="beam width (default: the model's)")
    parser.add_argument("--recursive", action="store_true", help="also the audio of sub-folders")
    parser.add_argument("--force", action="store_true", help="overwrite existing .tlog files")
    parser.add_argument("--vad_aggressiveness", type=int, default=3, choices=range(4),
                        help="how strictly webrtcvad filters out non-speech (0-3)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        pairs = jobs(args)
        model = Model(args.model)
        if args.beam_width:
            model.setBeamWidth(args.beam_width)
        if args.scorer:
            model.enableExternalScorer(args.scorer)
    except USER_ERRORS as err:
        print(f"transcribe: error: {err}", file=sys.stderr)
        return 1
    failed = 0
    for src, dst in pairs:
        try:
            segments = transcribe_file(model, src, args.vad_aggressiveness)
        except USER_ERRORS as err:
            log.error("%s", err)
            failed += 1
            continue
        write_tlog(dst, segments)
        log.info("%s: %d segments -> %s", src, len(segments), dst)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
