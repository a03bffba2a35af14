"""Evaluation: CTC loss, greedy decoding, WER/CER, Mozilla's report and ``--test_output_file`` JSON."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from .data import Sample, batch_order, make_dataset
from .decoding import Decoder, DecoderConfig
from .distribute import distribute_batches, sum_over_workers, worker_count
from .devices import replica_runner
from .features import FeatureConfig
from ds_ctcdecoder.alphabet import Alphabet
from .util import report as report_tools
from .util.log import log, mozilla_log
from .util.report import Report, SampleResult, report_lines, sample_result, summarize


DECODE_GROUP = 256  # samples decoded together, in parallel processes when beam searching


def make_eval_step(model, strategy, element_spec, jit_compile=False):
    """A distributed tf.function: batch -> (logits, output lengths, per-sample CTC loss, indices).

    ``jit_compile``: the replica step is compiled with XLA where the strategy allows; the logits then
    have padded frames beyond the output lengths (callers cut each row to its length anyway).
    """
    def replica_step(inputs, targets, indices):
        logits, out_len = model(inputs, training=False)
        labels, label_len = targets
        loss = tf.nn.ctc_loss(labels, logits, label_len, out_len, logits_time_major=False,
                              blank_index=-1)
        return logits, out_len, loss, indices

    return tf.function(replica_runner(replica_step, strategy, jit_compile, "evaluation"),
                       input_signature=[element_spec])


def _local(strategy, value) -> list[np.ndarray]:
    return [v.numpy() for v in strategy.experimental_local_results(value)]


def infer(model, strategy, samples: list[Sample], name: str, features: FeatureConfig, batch_size: int,
          progress: bool = True, eval_step=None, reverse: bool = False):
    """Run the model over ``samples`` -> yields groups of (logits [T, C], CTC loss, sample index).

    Batches run shortest first (longest first with ``reverse``: Mozilla's --reverse_dev/--reverse_test).
    On several hosts each one gets the results of its own share of the samples.
    """
    replicas = strategy.num_replicas_in_sync
    order = batch_order(samples, batch_size * replicas, epoch=0, sortagrad=True, seed=0,
                        drop_remainder=False, reverse=reverse)
    batches = distribute_batches(strategy, lambda mine, _, size: make_dataset(samples, mine, features, size),
                                 order, batch_size)
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


def mean_loss(model, strategy, samples: list[Sample], name: str, features: FeatureConfig,
              batch_size: int, progress: bool = True, eval_step=None, reverse: bool = False) -> float:
    """The mean CTC loss over ``samples``, without decoding (Mozilla's --metrics_files); over all
    hosts' shares on several hosts (every host calls this together)."""
    losses = [loss for group in infer(model, strategy, samples, name, features, batch_size, progress,
                                      eval_step, reverse) for _, loss, _ in group]
    total, n = sum(losses), len(losses)
    if worker_count(strategy) > 1:
        total, n = sum_over_workers(strategy, [total, n])
    return total / max(n, 1)


def evaluate(model, strategy, samples: list[Sample], name: str, alphabet: Alphabet,
             features: FeatureConfig, batch_size: int, progress: bool = True, eval_step=None,
             decoder: Decoder | None = None, reverse: bool = False) -> Report:
    """Decode every sample (greedy unless a decoder is given); WER/CER as total edits over total length.

    On several hosts the totals are those of the whole set (every host calls this together) and
    ``samples`` of the report are this host's.
    """
    decoder = decoder or Decoder(DecoderConfig(beam_width=0), alphabet)
    results: list[SampleResult] = []
    for group in infer(model, strategy, samples, name, features, batch_size, progress, eval_step, reverse):
        results.extend(decode_group(group, decoder, samples))
    report = summarize(name, results)
    if worker_count(strategy) > 1:
        loss, n, wd, wl, cd, cl = sum_over_workers(strategy, [
            sum(r.loss for r in results), len(results), sum(r.word_distance for r in results),
            sum(r.word_length for r in results), sum(r.char_distance for r in results),
            sum(r.char_length for r in results)])
        report.loss = loss / max(n, 1)
        report.wer, report.cer = min(1.0, wd / max(wl, 1)), min(1.0, cd / max(cl, 1))
    return report


def _result(sample: Sample, text: str, loss: float) -> SampleResult:
    return sample_result(sample.name, sample.transcript, text, loss)


def log_report(report: Report, report_count: int) -> None:
    lines = report_lines(report, report_count)
    mozilla_log.info(lines[0])
    if len(lines) > 1:
        mozilla_log.info("\n".join(lines[1:]))


def write_test_output(path: str, reports: list[Report]) -> None:
    log.info("Wrote %d test results to %s", report_tools.write_test_output(path, reports), path)
