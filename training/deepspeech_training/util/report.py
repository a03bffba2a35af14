"""Mozilla's test report, without TensorFlow: per-sample scores, WER/CER totals, the best/median/worst
listing and the ``--test_output_file`` JSON. Shared by the trainer and ``evaluate_tflite.py``."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
from rapidfuzz.distance import Levenshtein


@dataclass
class SampleResult:
    wav_filename: str
    src: str
    res: str
    loss: float
    wer: float
    cer: float
    word_distance: int
    word_length: int
    char_distance: int
    char_length: int


@dataclass
class Report:
    name: str
    loss: float
    wer: float
    cer: float
    samples: list[SampleResult]


def score(src: str, res: str) -> tuple[int, int, int, int]:
    """(word edits, words in src, char edits, chars in src): Levenshtein distances."""
    words_src = src.split()
    return (Levenshtein.distance(words_src, res.split()), len(words_src),
            Levenshtein.distance(src, res), len(src))


def sample_result(wav_filename: str, src: str, res: str, loss: float = 0.0) -> SampleResult:
    wd, wl, cd, cl = score(src, res)
    return SampleResult(wav_filename, src, res, loss, wd / max(wl, 1), cd / max(cl, 1), wd, wl, cd, cl)


def summarize(name: str, results: list[SampleResult]) -> Report:
    words = sum(r.word_length for r in results)
    chars = sum(r.char_length for r in results)
    return Report(
        name=name,
        loss=float(np.mean([r.loss for r in results])) if results else float("nan"),
        wer=min(1.0, sum(r.word_distance for r in results) / max(words, 1)),  # capped, as Mozilla's
        cer=min(1.0, sum(r.char_distance for r in results) / max(chars, 1)),
        samples=results,
    )


def report_lines(report: Report, report_count: int) -> list[str]:
    """Mozilla's test report: the totals line, then the best, median and worst samples by WER."""
    lines = [f"Test on {report.name} - WER: {report.wer:f}, CER: {report.cer:f}, loss: {report.loss:f}"]
    if not report_count or not report.samples:
        return lines
    line = "-" * 80
    ranked = sorted(report.samples, key=lambda r: (r.wer, -r.loss))  # Mozilla's order
    mid = max(0, len(ranked) // 2 - report_count // 2)
    groups = [("Best WER", ranked[:report_count]), ("Median WER", ranked[mid:mid + report_count]),
              ("Worst WER", ranked[-report_count:])]
    lines.append(line)
    for title, group in groups:
        lines.append(f"{title}: ")
        for r in group:
            lines += [line, f"WER: {r.wer:f}, CER: {r.cer:f}, loss: {r.loss:f}",
                      f" - wav: file://{r.wav_filename}", f" - src: \"{r.src}\"",
                      f" - res: \"{r.res}\""]
        lines.append(line)
    return lines


def write_test_output(path: str, reports: list[Report]) -> int:
    """Every sample as JSON (Mozilla's --test_output_file fields); returns the number written."""
    fields = ("wav_filename", "src", "res", "loss", "char_distance", "char_length", "word_distance",
              "word_length", "cer", "wer")
    rows = [{k: asdict(r)[k] for k in fields} for rep in reports for r in rep.samples]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2, ensure_ascii=False)
    return len(rows)
