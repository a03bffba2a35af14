"""Evaluation: CTC loss, greedy decoding, WER/CER, Mozilla's report and ``--test_output_file`` JSON."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from rapidfuzz.distance import Levenshtein
from tqdm import tqdm

from .data import Sample, batch_order, make_dataset
from .decoding import Decoder, DecoderConfig
from .features import FeatureConfig
from ds_ctcdecoder.alphabet import Alphabet
from .util.log import log


DECODE_GROUP = 256  # samples decoded together, in parallel processes when beam searching


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


def make_eval_step(model, strategy, element_spec):
    """A distributed tf.function: batch -> (logits, output lengths, per-sample CTC loss, indices)."""
    def replica_step(inputs, targets, indices):
        logits, out_len = model(inputs, training=False)
        labels, label_len = targets
        loss = tf.nn.ctc_loss(labels, logits, label_len, out_len, logits_time_major=False,
                              blank_index=-1)
        return logits, out_len, loss, indices

    def step(batch):
        return strategy.run(replica_step, args=batch)

    return tf.function(step, input_signature=[element_spec])


def _local(strategy, value) -> list[np.ndarray]:
    return [v.numpy() for v in strategy.experimental_local_results(value)]


def infer(model, strategy, samples: list[Sample], name: str, features: FeatureConfig, batch_size: int,
          progress: bool = True, eval_step=None):
    """Run the model over ``samples`` -> yields groups of (logits [T, C], CTC loss, sample index)."""
    replicas = strategy.num_replicas_in_sync
    order = batch_order(samples, batch_size * replicas, epoch=0, sortagrad=True, seed=0,
                        drop_remainder=False)
    dataset = make_dataset(samples, order, features, batch_size * replicas)
    batches = strategy.experimental_distribute_dataset(dataset)
    step = eval_step or make_eval_step(model, strategy, batches.element_spec)
    pending: list[tuple[np.ndarray, float, int]] = []
    total_batches = -(-len(order) // (batch_size * replicas))
    with tqdm(total=total_batches, desc=f"Evaluating {name}", disable=not progress, leave=False) as bar:
        for batch in batches:
            logits, out_len, loss, indices = step(batch)
            for lg, ln, ls, ix in zip(*(_local(strategy, t) for t in (logits, out_len, loss, indices))):
                pending.extend((row[:n], float(sample_loss), int(i)) for row, n, sample_loss, i in zip(lg, ln, ls, ix))
            if len(pending) >= DECODE_GROUP:
                yield pending
                pending = []
            bar.update(1)
    if pending:
        yield pending


def decode_group(group, decoder: Decoder, samples: list[Sample]) -> list[SampleResult]:
    """Decode one group from ``infer`` together (one process pool for the beam search)."""
    width = max(len(lg) for lg, _, _ in group)
    logits = np.stack([np.pad(lg, ((0, width - len(lg)), (0, 0))) for lg, _, _ in group])
    texts = decoder.decode(logits, np.array([len(lg) for lg, _, _ in group]))
    return [_result(samples[i], text, loss) for (_, loss, i), text in zip(group, texts)]


def evaluate(model, strategy, samples: list[Sample], name: str, alphabet: Alphabet,
             features: FeatureConfig, batch_size: int, progress: bool = True, eval_step=None,
             decoder: Decoder | None = None) -> Report:
    """Decode every sample (greedy unless a decoder is given); WER/CER as total edits over total length."""
    decoder = decoder or Decoder(DecoderConfig(beam_width=0), alphabet)
    results: list[SampleResult] = []
    for group in infer(model, strategy, samples, name, features, batch_size, progress, eval_step):
        results.extend(decode_group(group, decoder, samples))
    return summarize(name, results)


def _result(sample: Sample, text: str, loss: float) -> SampleResult:
    wd, wl, cd, cl = score(sample.transcript, text)
    return SampleResult(sample.path, sample.transcript, text, loss, wd / max(wl, 1), cd / max(cl, 1),
                        wd, wl, cd, cl)


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


def log_report(report: Report, report_count: int) -> None:
    """Mozilla's test report: totals, then the best, median and worst samples by WER."""
    line = "-" * 80
    log.info("Test on %s - WER: %f, CER: %f, loss: %f", report.name, report.wer, report.cer, report.loss)
    if not report_count or not report.samples:
        return
    ranked = sorted(report.samples, key=lambda r: (r.wer, -r.loss))  # Mozilla's order
    n = len(ranked)
    mid = max(0, n // 2 - report_count // 2)
    groups = [("Best WER", ranked[:report_count]), ("Median WER", ranked[mid:mid + report_count]),
              ("Worst WER", ranked[-report_count:])]
    lines = [line]
    for title, group in groups:
        lines.append(f"{title}: ")
        for r in group:
            lines += [line, f"WER: {r.wer:f}, CER: {r.cer:f}, loss: {r.loss:f}",
                      f" - wav: file://{r.wav_filename}", f" - src: \"{r.src}\"",
                      f" - res: \"{r.res}\""]
        lines.append(line)
    log.info("\n".join(lines))


def write_test_output(path: str, reports: list[Report]) -> None:
    """Every test sample as JSON (Mozilla's --test_output_file fields)."""
    rows = [{"wav_filename": r.wav_filename, "src": r.src, "res": r.res, "loss": r.loss,
             "char_distance": r.char_distance, "char_length": r.char_length,
             "word_distance": r.word_distance, "word_length": r.word_length,
             "cer": r.cer, "wer": r.wer} for rep in reports for r in rep.samples]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2, ensure_ascii=False)
    log.info("Wrote %d test results to %s", len(rows), path)
