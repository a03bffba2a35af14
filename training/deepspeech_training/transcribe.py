"""Mozilla's ``transcribe.py``: long recordings, or folders of them, split at pauses and transcribed.

    ./transcribe.py --checkpoint_dir ck --scorer_path kenlm.scorer --src talk.wav      (Mozilla's way)
    ./transcribe.py --model export/output_graph.tflite --scorer kenlm.scorer --src recordings/ --recursive

Voice activity detection (webrtcvad, 30 ms frames, ``--vad_aggressiveness`` 0-3) splits the audio at
pauses; each voiced segment is transcribed on its own. With ``--checkpoint_dir`` (Mozilla's) the
training checkpoint runs, segments in batches of ``--batch_size`` (those longer than
``--outlier_duration_ms`` in batches of ``--outlier_batch_size``), decoded with the trainer's decoder
flags (``--scorer_path``, ``--beam_width``, ``--lm_alpha`` ...). With ``--model`` an export runs through
the ``deepspeech`` client instead (its own beam width unless ``--beam_width`` is given).

The result, ``<audio>.tlog`` beside each file (or ``--dst`` for a single file), is Mozilla's JSON list of
segments ``{"start", "end", "transcript"}`` (milliseconds), each with its ``words`` (``word``,
``start_time`` and ``duration`` in seconds from the start of the file) added. A ``.catalog`` is Mozilla's
JSON list of ``{"audio": ..., "tlog": ...}`` entries (paths relative to the catalog). Any audio format
at any rate is read. Existing .tlog files are kept unless ``--force``.
"""
from __future__ import annotations

import collections
import glob
import json
import os
import sys
from dataclasses import dataclass

import numpy as np
from absl import flags

from .flags import FLAGS, decoder_config, define_flags
from .util.log import log

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")
VAD_RATES = (8000, 16000, 32000, 48000)
FRAME_MS = 30
PADDING_FRAMES = 10  # 300 ms: the window in which voiced (unvoiced) frames start (end) a segment
THRESHOLD = 0.5  # ... when more than this share of the window's frames are voiced (unvoiced)


class UsageError(ValueError):
    pass


def define_transcribe_flags() -> None:
    """The trainer's flags and Mozilla's transcribe.py flags (once per process)."""
    if "src" in FLAGS:
        return
    define_flags()
    f = flags
    f.DEFINE_string("src", "", "audio file, folder of audio files, or .catalog file to transcribe")
    f.DEFINE_string("dst", "", "the .tlog of a single --src file (default: beside it)")
    f.DEFINE_boolean("force", False, "overwrite existing .tlog files")
    f.DEFINE_boolean("recursive", False, "also the audio files of sub-folders of a --src folder")
    f.DEFINE_integer("vad_aggressiveness", 3, "how strictly webrtcvad filters out non-speech (0-3)",
                     lower_bound=0, upper_bound=3)
    f.DEFINE_integer("batch_size", 40, "segments per inference batch (--checkpoint_dir)")
    f.DEFINE_integer("outlier_duration_ms", 10000, "segments longer than this are outliers, inferred in "
                     "batches of --outlier_batch_size (--checkpoint_dir)")
    f.DEFINE_integer("outlier_batch_size", 1, "segments per batch of outliers (--checkpoint_dir)")
    f.DEFINE_string("model", "", "an exported model (.tflite, .pb, .pbmm, SavedModel) to run through the "
                    "deepspeech client instead of the --checkpoint_dir checkpoint")


@dataclass(frozen=True)
class Jobs:
    src: str
    dst: str = ""
    force: bool = False
    recursive: bool = False

    def pairs(self) -> list[tuple[str, str]]:
        """(audio, tlog) pairs to transcribe, as Mozilla's: a file, a folder, or a .catalog."""
        src = os.path.abspath(self.src)
        if os.path.isdir(src):
            if self.dst:
                raise UsageError("--dst is not supported in folder mode (each .tlog goes beside its audio)")
            pattern = os.path.join(glob.escape(src), "**", "*") if self.recursive else os.path.join(glob.escape(src), "*")
            files = sorted(p for p in glob.glob(pattern, recursive=self.recursive)
                           if p.lower().endswith(AUDIO_EXTENSIONS) and os.path.isfile(p))
            pairs = [(p, os.path.splitext(p)[0] + ".tlog") for p in files]
            return [pair for pair in pairs if self.force or not os.path.exists(pair[1])]
        if not os.path.isfile(src):
            raise UsageError(f"{self.src}: no such file or folder")
        if src.endswith(".catalog"):
            return self._catalog(src)
        dst = os.path.abspath(self.dst) if self.dst else os.path.splitext(src)[0] + ".tlog"
        if os.path.exists(dst) and not self.force:
            raise UsageError(f'Destination file "{dst}" already existing - use --force for overwriting')
        if not os.path.isdir(os.path.dirname(dst)):
            raise UsageError(f"Missing destination directory {os.path.dirname(dst)}")
        return [(src, dst)]

    def _catalog(self, src: str) -> list[tuple[str, str]]:
        if self.dst:
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
        if not self.force and any(os.path.exists(t) for _, t in pairs):
            raise UsageError("Destination file(s) from catalog already existing, use --force for overwriting")
        return pairs


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
    from deepspeech.audio import from_int16, resample, to_int16

    return to_int16(resample(from_int16(samples), rate, target))


def tlog_segments(candidates, spans: list[tuple[int, int]], rate: int) -> list[dict]:
    """Mozilla's .tlog entries from each segment's best ``CandidateTranscript`` and its samples."""
    from deepspeech.client import words_from_candidate_transcript

    segments = []
    for best, (first, end) in zip(candidates, spans):
        offset = first / rate
        words = [{**w, "start_time": round(w["start_time"] + offset, 4)}
                 for w in words_from_candidate_transcript(best)]
        segments.append({"start": round(1000 * first / rate), "end": round(1000 * end / rate),
                         "transcript": "".join(t.text for t in best.tokens), "words": words})
    return segments


def write_tlog(path: str, segments: list[dict]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(segments, f, indent=2, ensure_ascii=False)
    os.replace(tmp, path)


class ExportTranscriber:
    """``--model``: an export through the ``deepspeech`` client."""

    def __init__(self, path: str):
        from deepspeech import Model

        self.model = Model(path)
        self.rate = self.model.sampleRate()
        if FLAGS["beam_width"].present:
            self.model.setBeamWidth(FLAGS.beam_width)
        if FLAGS.scorer_path:
            self.model.enableExternalScorer(FLAGS.scorer_path)
            if FLAGS["lm_alpha"].present or FLAGS["lm_beta"].present:
                self.model.setScorerAlphaBeta(FLAGS.lm_alpha, FLAGS.lm_beta)

    def candidates(self, pieces: list[np.ndarray]) -> list:
        return [self.model.sttWithMetadata(piece, 1).transcripts[0] for piece in pieces]


class CheckpointTranscriber:
    """``--checkpoint_dir`` (Mozilla's): the training checkpoint, segments in batches (shortest first),
    decoded with the trainer's decoder flags."""

    def __init__(self, load_dir: str):
        import tensorflow as tf
        from ds_ctcdecoder.alphabet import UTF8Alphabet

        from .decoding import Decoder
        from .run import load_for_inference

        self.model, self.features, self.alphabet = load_for_inference(tf.distribute.get_strategy(), load_dir)
        self.rate = self.features.sample_rate
        self.utf8 = isinstance(self.alphabet, UTF8Alphabet)
        self.frame_seconds = self.features.win_step_ms * self.model.model_config.time_stride / 1000.0
        self.decoder = Decoder(decoder_config(), self.alphabet)
        log.info("Transcribing with %s", self.decoder.name)

    def batches(self, pieces: list[np.ndarray]) -> list[list[int]]:
        """Segment indices in batches of --batch_size, outliers (> --outlier_duration_ms) in batches of
        --outlier_batch_size; shortest first."""
        limit = FLAGS.outlier_duration_ms * self.rate // 1000
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
        normal, outliers = [i for i in order if len(pieces[i]) <= limit], [i for i in order if len(pieces[i]) > limit]
        size, outlier_size = max(1, FLAGS.batch_size), max(1, FLAGS.outlier_batch_size)
        return ([normal[i:i + size] for i in range(0, len(normal), size)] +
                [outliers[i:i + outlier_size] for i in range(0, len(outliers), outlier_size)])

    def candidates(self, pieces: list[np.ndarray]) -> list:
        import tensorflow as tf
        from deepspeech.audio import from_int16
        from deepspeech.metadata import candidate_from_result

        from .features import spectrogram

        out = [None] * len(pieces)
        for batch in self.batches(pieces):
            specs = [spectrogram(tf.constant(from_int16(pieces[i])), self.features) for i in batch]
            lengths = tf.constant([int(s.shape[0]) for s in specs], tf.int32)
            width = int(tf.reduce_max(lengths))
            padded = tf.stack([tf.pad(s, [[0, width - int(s.shape[0])], [0, 0]]) for s in specs])
            logits, out_lengths = self.model((padded, lengths), training=False)
            for i, result in zip(batch, self.decoder.results(logits.numpy(), out_lengths.numpy())):
                out[i] = candidate_from_result(result, self.alphabet, self.frame_seconds, self.utf8)
        return out


def transcribe_file(transcriber, src: str, aggressiveness: int) -> list[dict]:
    from deepspeech.client import load_samples

    samples, _ = load_samples(src, transcriber.rate)
    spans = vad_segments(samples, transcriber.rate, aggressiveness)
    candidates = transcriber.candidates([samples[first:end] for first, end in spans]) if spans else []
    return tlog_segments(candidates, spans, transcriber.rate)


def run() -> int:
    """Transcribe what the parsed flags say -> exit status (1: an error, each named on one line)."""
    from deepspeech.client import USER_ERRORS as CLIENT_ERRORS

    from .checkpoint import CheckpointError
    from .flags import checkpoint_dirs
    from .util.log import setup_logging

    setup_logging(FLAGS.log_level)
    errors = (*CLIENT_ERRORS, CheckpointError)
    try:
        if not FLAGS.src:
            raise UsageError("give the audio to transcribe with --src (a file, a folder or a .catalog)")
        pairs = Jobs(FLAGS.src, FLAGS.dst, FLAGS.force, FLAGS.recursive).pairs()
        transcriber = ExportTranscriber(FLAGS.model) if FLAGS.model else CheckpointTranscriber(checkpoint_dirs()[0])
    except errors as err:
        print(f"transcribe: error: {err}", file=sys.stderr)
        return 1
    failed = 0
    for src, dst in pairs:
        try:
            segments = transcribe_file(transcriber, src, FLAGS.vad_aggressiveness)
        except errors as err:
            log.error("%s: %s", src, err)
            failed += 1
            continue
        write_tlog(dst, segments)
        log.info("%s: %d segments -> %s", src, len(segments), dst)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    """In-process use (tests): parse ``argv`` (without the program name), then ``run()``."""
    define_transcribe_flags()
    FLAGS.unparse_flags()
    try:
        FLAGS(["transcribe.py", *argv])
    except flags.Error as err:
        print(f"transcribe: error: {err}", file=sys.stderr)
        return 1
    return run()


def run_script() -> None:
    from absl import app

    define_transcribe_flags()
    app.run(lambda argv: sys.exit(run()))
