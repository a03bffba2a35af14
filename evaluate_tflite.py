#!/usr/bin/env python3
"""WER and CER of an exported model on a Mozilla CSV, through the ``deepspeech`` client package.

    ./evaluate_tflite.py --model export/output_graph.tflite --scorer kenlm.scorer --csv test.csv \\
        [--proc N] [--dump PREFIX] [--report_count 5] [--test_output_file results.json]

Mozilla's ``evaluate_tflite.py``: ``--proc`` worker processes (default: the number of CPUs) each load
the model once and transcribe files; the report is the trainer's (WER and CER over all samples, capped
at 1, then the best, median and worst samples). There is no loss (it is reported as 0). The report and the JSON come from the trainer's
``deepspeech_training/util/report.py`` (no TensorFlow). ``--dump``
writes PREFIX.txt (``wav reference`` lines) and PREFIX.out (``wav transcript`` lines). Any model format
the client loads works; a .tflite model needs only ai-edge-litert, not TensorFlow.
"""
from __future__ import annotations

import argparse
import csv
import logging
import multiprocessing
import os
import sys

from deepspeech import Model
from deepspeech.audio import AudioError
from deepspeech.client import USER_ERRORS, load_samples

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "training"))
from deepspeech_training.util.report import (SampleResult, report_lines, sample_result,  # noqa: E402
                                              summarize, write_test_output)

log = logging.getLogger("evaluate_tflite")


def read_rows(csv_path: str) -> list[tuple[str, str]]:
    """(audio path, transcript) of each row; relative paths are relative to the CSV's folder."""
    base = os.path.dirname(os.path.abspath(csv_path))
    try:
        with open(csv_path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if not {"wav_filename", "transcript"} <= set(reader.fieldnames or ()):
                raise ValueError(f"{csv_path}: needs the columns wav_filename and transcript")
            return [(os.path.join(base, row["wav_filename"]), (row["transcript"] or "").strip())
                    for row in reader]
    except FileNotFoundError:
        raise ValueError(f"{csv_path}: CSV file not found") from None


_MODEL = None


def _load_worker(model_path: str, scorer_path: str | None, beam_width: int | None) -> None:
    global _MODEL
    _MODEL = Model(model_path)
    if beam_width:
        _MODEL.setBeamWidth(beam_width)
    if scorer_path:
        _MODEL.enableExternalScorer(scorer_path)


def _transcribe(row: tuple[str, str]) -> tuple[str, str, str | None, str | None]:
    """-> (wav, reference, transcript or None, error or None)."""
    wav, src = row
    try:
        audio, _ = load_samples(wav, _MODEL.sampleRate())
        return wav, src, _MODEL.stt(audio), None
    except AudioError as err:
        return wav, src, None, str(err)


def transcribe_all(args, rows) -> list[tuple]:
    init = (args.model, args.scorer, args.beam_width)
    workers = max(1, min(args.proc, len(rows)))
    if workers == 1:
        _load_worker(*init)
        return [_transcribe(row) for row in rows]
    with multiprocessing.get_context("fork").Pool(workers, _load_worker, init) as pool:  # nothing loaded yet
        return pool.map(_transcribe, rows, chunksize=max(1, len(rows) // (workers * 8)))


def dump(prefix: str, results: list[SampleResult]) -> None:
    with open(prefix + ".txt", "w", encoding="utf-8") as refs, open(prefix + ".out", "w", encoding="utf-8") as outs:
        for r in results:
            refs.write(f"{r.wav_filename} {r.src}\n")
            outs.write(f"{r.wav_filename} {r.res}\n")
    print(f"Reference texts dumped to {prefix}.txt")
    print(f"Transcription dumped to {prefix}.out")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Computing TFLite accuracy")
    parser.add_argument("--model", required=True, help="Path to the exported model (.tflite, .pb, .pbmm, "
                                                       "SavedModel)")
    parser.add_argument("--scorer", required=False, help="Path to the external scorer file")
    parser.add_argument("--csv", required=True, help="Path to the CSV source file")
    parser.add_argument("--proc", type=int, default=os.cpu_count() or 1,
                        help="Number of processes to spawn, defaulting to number of CPUs")
    parser.add_argument("--dump", metavar="PREFIX", help="Dump the references to PREFIX.txt and the "
                                                         "transcriptions to PREFIX.out, one 'wav text' line each")
    parser.add_argument("--beam_width", type=int, help="Beam width (default: the model's)")
    parser.add_argument("--report_count", type=int, default=5, help="samples shown as best, median, worst")
    parser.add_argument("--test_output_file", help="write every sample's result as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        rows = read_rows(args.csv)
        print(f"Totally {len(rows)} wav entries found in csv")
        done = transcribe_all(args, rows)
    except USER_ERRORS as err:
        print(f"evaluate_tflite: error: {err}", file=sys.stderr)
        return 1
    failed = [(wav, error) for wav, _, _, error in done if error]
    for wav, error in failed:
        log.warning("skipped: %s", error)
    results = [sample_result(wav, src, res) for wav, src, res, error in done if not error]
    print(f"Totally {len(results)} wav file transcripted")
    report = summarize(args.csv, results)
    print("\n".join(report_lines(report, args.report_count)))
    if args.dump:
        dump(args.dump, results)
    if args.test_output_file:
        write_test_output(args.test_output_file, [report])
    return 1 if failed and not results else 0


if __name__ == "__main__":
    sys.exit(main())
