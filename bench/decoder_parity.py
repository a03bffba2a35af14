#!/usr/bin/env python3
"""Decoder parity: our ds_ctcdecoder against Mozilla DeepSpeech 0.9.3's own runtime, same outputs.

    bench/decoder_parity.sh        # dumps the demo model's outputs, runs every configuration, prints the table

Subcommands:
    run    --logits clean.npz --set clean --scorers none,mozilla.scorer --alpha_beta 0.93:1.18,0.5:1.0
           --beams 16,100,500,1024 --out bench/results/decoder_parity.jsonl [--limit N]
    report --rows bench/results/decoder_parity.jsonl       (markdown table)

Every utterance of the .npz (bench/dump_logits.py) is decoded by ours (cutoff_prob 1.0, cutoff_top_n 40:
the runtime's streaming decoder's fixed values) and by libdeepspeech.so through a replay graph
(util/replay_graph.py) that feeds it exactly these probabilities, with DS_SetModelBeamWidth,
DS_EnableExternalScorer and DS_SetScorerAlphaBeta. One row per (outputs, scorer, alpha/beta, beam):
the fraction of identical top transcripts (and of identical word sequences: Mozilla's may end with a
space), WER and CER of each against the references (the trainer's
report), and decode seconds per second of audio of each. Mozilla's call also runs the replay graph and
the MFCCs of the silence it is fed; that overhead is measured per utterance as the time of the same
call at beam width 1 without a scorer (best of 3), and subtracted ("mozilla_net"; the raw time is kept, and the
beam-1 decode inside the overhead makes the net time a slight underestimate). Scorers must be in
Mozilla's layout (KenLM binary, 'TRIE' header, OpenFST vocabulary); "none" decodes without one.
Each differing utterance (reference, both transcripts and both scores) goes to --diffs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
for sub in ("training", "util", "native_client/ctcdecode"):
    sys.path.insert(0, str(ROOT / sub))

import numpy as np  # noqa: E402

from mozilla_runtime import (Runtime, RuntimeCallError, RuntimeLibraryError)  # noqa: E402

log = logging.getLogger("deepspeech.bench")
CUTOFF_PROB, CUTOFF_TOP_N = 1.0, 40  # DS_CreateStream's values


def alphabet_of(labels: list[str]):
    """The dumped model's alphabet: a bytes-output model's 255 byte labels are Mozilla's UTF8Alphabet."""
    from ds_ctcdecoder import Alphabet, UTF8Alphabet

    utf8 = UTF8Alphabet()
    return utf8 if labels == utf8.labels else Alphabet.from_labels(labels)


def load_outputs(path: str, limit: int = 0):
    data = np.load(path)
    offsets = data["offsets"]
    probs = [data["probs"][a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    refs, seconds = [str(t) for t in data["transcripts"]], [float(s) for s in data["seconds"]]
    if limit:
        probs, refs, seconds = probs[:limit], refs[:limit], seconds[:limit]
    return probs, refs, seconds, [str(x) for x in data["labels"]]


@contextlib.contextmanager
def quiet_stderr():
    """Silence the runtime's banner and warnings (C++ writes to fd 2) while a model loads."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def configurations(scorers: list[str], alpha_beta: list[tuple[float, float]], beams: list[int]):
    """(scorer or None, alpha, beta, beam) in run order."""
    for scorer in scorers:
        pairs = [(None, None)] if scorer is None else alpha_beta
        for alpha, beta in pairs:
            for beam in beams:
                yield scorer, alpha, beta, beam


def decode_mozilla(runtime: Runtime, graphs: list[Path], probs, configs, usable: set) -> dict:
    """{config: [(text, confidence, seconds)] per utterance} and {"overhead": [seconds]}."""
    results = {c: [] for c in configs}
    results["overhead"] = []
    from replay_graph import replay_audio

    for graph, p in zip(graphs, probs):
        audio = replay_audio(len(p))
        with quiet_stderr():
            model = runtime.model(graph)
        try:
            model.set_beam_width(1)
            model.stt_with_metadata(audio, 1)  # warm-up: the session's first run allocates
            results["overhead"].append(min(_timed(model, audio) for _ in range(3)))
            current = None
            for config in configs:
                scorer, alpha, beta, beam = config
                if scorer not in usable:
                    continue
                if scorer != current:
                    model.disable_scorer() if scorer is None else model.enable_scorer(scorer)
                    current = scorer
                if scorer is not None:
                    model.set_alpha_beta(alpha, beta)
                model.set_beam_width(beam)
                start = time.perf_counter()
                [best] = model.stt_with_metadata(audio, 1)
                results[config].append((best.text, best.confidence, time.perf_counter() - start))
        finally:
            model.close()
    return results


def _timed(model, audio) -> float:
    start = time.perf_counter()
    model.stt_with_metadata(audio, 1)
    return time.perf_counter() - start


def decode_ours(labels: list[str], probs, configs, usable: set) -> dict:
    from ds_ctcdecoder import Scorer, ctc_beam_search_decoder

    alphabet, scorers, results = alphabet_of(labels), {}, {}
    for config in configs:
        scorer_path, alpha, beta, beam = config
        if scorer_path not in usable:
            continue
        scorer = None
        if scorer_path is not None:
            if scorer_path not in scorers:
                scorers[scorer_path] = Scorer(alpha, beta, scorer_path, alphabet)
                scorers[scorer_path].load()  # load the LM before timing
            scorer = scorers[scorer_path]
            scorer.reset_params(alpha, beta)
        ctc_beam_search_decoder(probs[0], alphabet, beam, CUTOFF_PROB, CUTOFF_TOP_N, scorer)  # warm-up
        rows = []
        for p in probs:
            start = time.perf_counter()
            [best] = ctc_beam_search_decoder(p, alphabet, beam, CUTOFF_PROB, CUTOFF_TOP_N, scorer)
            rows.append((best.transcript, best.confidence, time.perf_counter() - start))
        results[config] = rows
    return results


def usable_scorers(runtime: Runtime, graph: Path, scorers: list) -> set:
    """The scorers Mozilla's runtime loads; each other one is named with the runtime's error."""
    usable = set()
    with quiet_stderr():
        model = runtime.model(graph)
    try:
        for scorer in scorers:
            try:
                if scorer is not None:
                    model.enable_scorer(scorer)
                    model.disable_scorer()
                usable.add(scorer)
            except RuntimeCallError as e:
                log.error("%s: Mozilla's runtime does not load this scorer (%s); skipped. It needs Mozilla's "
                          "layout (KenLM binary, 'TRIE' header, OpenFST vocabulary)", scorer, e)
    finally:
        model.close()
    return usable


def summary_row(args, config, ours, theirs, overhead, refs, seconds) -> tuple[dict, list[dict]]:
    from deepspeech_training.util.report import sample_result, summarize

    scorer, alpha, beta, beam = config
    audio = sum(seconds)
    same = [o[0] == t[0] for o, t in zip(ours, theirs)]
    same_words = [o[0].split() == t[0].split() for o, t in zip(ours, theirs)]  # Mozilla may end on a space
    reports = {name: summarize(name, [sample_result(str(i), r, h[0]) for i, (r, h) in enumerate(zip(refs, hyps))])
               for name, hyps in (("ours", ours), ("mozilla", theirs))}
    raw = sum(t[2] for t in theirs)
    row = dict(set=args.set, scorer=scorer or "none", alpha=alpha, beta=beta, beam=beam, utterances=len(refs),
               audio_seconds=round(audio, 2), identical=sum(same) / len(same),
               identical_words=sum(same_words) / len(same),
               wer_ours=reports["ours"].wer, wer_mozilla=reports["mozilla"].wer,
               cer_ours=reports["ours"].cer, cer_mozilla=reports["mozilla"].cer,
               ours_s_per_audio_s=sum(o[2] for o in ours) / audio,
               mozilla_raw_s_per_audio_s=raw / audio,
               mozilla_overhead_s_per_audio_s=sum(overhead) / audio,
               mozilla_net_s_per_audio_s=(raw - sum(overhead)) / audio,
               cutoff_prob=CUTOFF_PROB, cutoff_top_n=CUTOFF_TOP_N, runtime=args.runtime_version,
               diffs=args.diffs, logits=args.logits)
    diffs = [dict(set=args.set, scorer=scorer or "none", alpha=alpha, beta=beta, beam=beam, utterance=i,
                  ref=refs[i], ours=o[0], mozilla=t[0], ours_score=o[1], mozilla_score=t[1])
             for i, (o, t, s) in enumerate(zip(ours, theirs, same)) if not s]
    return row, diffs


def run(args) -> int:
    from replay_graph import write_replay_pb

    probs, refs, seconds, labels = load_outputs(args.logits, args.limit)
    scorers = [None if s == "none" else s for s in args.scorers.split(",")]
    alpha_beta = [tuple(float(x) for x in ab.split(":")) for ab in args.alpha_beta.split(",")]
    beams = [int(b) for b in args.beams.split(",")]
    configs = list(configurations(scorers, alpha_beta, beams))
    try:
        runtime = Runtime(args.runtime)
    except RuntimeLibraryError as e:
        log.error("%s", e)
        return 1
    args.runtime_version = f"{args.runtime} {runtime.version()}"
    alphabet = alphabet_of(labels)
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        graphs = [Path(tmp) / f"{i}.pb" for i in range(len(probs))]
        start = time.perf_counter()
        for graph, p in zip(graphs, probs):
            write_replay_pb(p, alphabet, graph)
        log.info("%d replay graphs written in %.1f s", len(graphs), time.perf_counter() - start)
        usable = usable_scorers(runtime, graphs[0], scorers)
        theirs = decode_mozilla(runtime, graphs, probs, configs, usable)
    ours = decode_ours(labels, probs, configs, usable)
    for config in configs:
        if config not in ours:
            continue
        row, diffs = summary_row(args, config, ours[config], theirs[config], theirs["overhead"], refs, seconds)
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        with open(args.diffs, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in diffs)
    return 0 if len(usable) == len(scorers) else 1


def report(args) -> int:
    rows = [json.loads(line) for line in open(args.rows) if line.strip()]
    print("| outputs | scorer | alpha, beta | beam | identical (words) | WER ours | WER Mozilla | "
          "ms per s of audio: ours | Mozilla net (raw − replay overhead) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ab = "—" if r["alpha"] is None else f"{r['alpha']:g}, {r['beta']:g}"
        print(f"| {r['set']} | {os.path.basename(r['scorer'])} | {ab} | {r['beam']} | "
              f"{100 * r['identical']:.1f}% ({100 * r['identical_words']:.1f}%) | {100 * r['wer_ours']:.2f}% | {100 * r['wer_mozilla']:.2f}% | "
              f"{1000 * r['ours_s_per_audio_s']:.2f} | {1000 * r['mozilla_net_s_per_audio_s']:.2f} "
              f"({1000 * r['mozilla_raw_s_per_audio_s']:.2f} − {1000 * r['mozilla_overhead_s_per_audio_s']:.2f}) |")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="decode dumped outputs with both decoders in every configuration")
    r.add_argument("--logits", required=True, help=".npz from bench/dump_logits.py")
    r.add_argument("--set", required=True, help="name of these outputs in the rows (clean, noisy)")
    r.add_argument("--scorers", default="none", help="comma-separated Mozilla-layout .scorer paths; none: no scorer")
    r.add_argument("--alpha_beta", default="0.931289039105002:1.1834137581510284",
                   help="comma-separated alpha:beta pairs, for every scorer")
    r.add_argument("--beams", default="16,100,500,1024")
    r.add_argument("--runtime", default="deepspeech", help="deepspeech (libdeepspeech.so 0.9.3, TensorFlow build) "
                   "or a path to another libdeepspeech.so that loads .pb graphs")
    r.add_argument("--limit", type=int, default=0, help="only the first N utterances")
    r.add_argument("--out", default="bench/results/decoder_parity.jsonl", help="JSON lines to append to")
    r.add_argument("--diffs", default="bench/results/decoder_parity_diffs.jsonl",
                   help="JSON lines to append every differing utterance to")
    p = sub.add_parser("report", help="markdown table of the rows")
    p.add_argument("--rows", default="bench/results/decoder_parity.jsonl")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return {"run": run, "report": report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
