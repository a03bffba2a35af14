"""WER and decoding cost of the streaming beam search against beam width and pruning (issue 17).

    python bench/beam_pruning.py --model runs/uni-server/export/output_graph.tflite \\
        --test_csv data/espeak-en/test.csv [--scorer runs/demo/kenlm.scorer] --out rows.jsonl

The model's probabilities of every test clip are computed once; each configuration (beam width,
``cutoff_prob``, ``beam_threshold``; ``cutoff_top_n`` 40) then decodes them as the server does, ``DecoderState.next`` on
16 frames at a time, and reports WER, CER and the search's CPU time per second of audio. One JSON
line per configuration, without and (given ``--scorer``) with the scorer.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

import jiwer

CONFIGS = "1024:1.0,500:1.0,128:1.0,500:0.9999,500:0.999,128:0.999,500:0.99,128:0.99,32:0.99"


def parse_configs(text: str) -> list[tuple[int, float, float]]:
    """"beam:cutoff_prob[:beam_threshold],..." -> [(beam, cutoff_prob, beam_threshold)]."""
    out = []
    for item in text.split(","):
        parts = item.split(":")
        out.append((int(parts[0]), float(parts[1]), float(parts[2]) if len(parts) > 2 else 0.0))
    return out


def clip_probs(model, test_csv: str):
    """-> ([probabilities [T, C] per clip], [transcripts], seconds of audio)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from server_load import read_clips

    from deepspeech.audio import from_int16

    acoustic = model._impl
    clips = read_clips(test_csv)
    probs = [acoustic.probs(acoustic.features(from_int16(audio))) for _, audio, _ in clips]
    with open(test_csv, encoding="utf-8") as f:
        truth = {os.path.abspath(os.path.join(os.path.dirname(test_csv), r["wav_filename"])): r["transcript"]
                 for r in csv.DictReader(f)}
    refs = [truth[os.path.abspath(path)] for path, _, _ in clips]
    return probs, refs, sum(len(audio) / rate for _, audio, rate in clips)


def measure(model, probs, refs, seconds, beam: int, cutoff: float, scorer, steps: int = 16,
            threshold: float = 0.0) -> dict:
    from ds_ctcdecoder import DecoderState

    decoding = model._decoding()
    hyps, cpu = [], 0.0
    for p in probs:
        start = time.process_time()
        state = DecoderState(model._impl.alphabet, beam, cutoff, 40, scorer, {}, threshold)
        for i in range(0, len(p), steps):
            state.next(p[i:i + steps])
        cpu += time.process_time() - start
        hyps.append(str(decoding.metadata(state, 1).transcripts[0]))
    return {"beam_width": beam, "cutoff_prob": cutoff, "cutoff_top_n": 40, "beam_threshold": threshold,
            "scorer": scorer is not None,
            "wer": round(jiwer.wer(refs, hyps), 4), "cer": round(jiwer.cer(refs, hyps), 4),
            "search_ms_per_audio_s": round(1000 * cpu / seconds, 2), "clips": len(refs)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--test_csv", required=True)
    p.add_argument("--scorer", default="")
    p.add_argument("--configs", default=CONFIGS, help="beam:cutoff_prob[:beam_threshold], comma-separated")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    import deepspeech

    model = deepspeech.Model(args.model)
    probs, refs, seconds = clip_probs(model, args.test_csv)
    scorers = [None]
    if args.scorer:
        model.enableExternalScorer(args.scorer)
        scorers.append(model._scorer)
    with open(args.out or os.devnull, "a", encoding="utf-8") as out:
        for scorer in scorers:
            for beam, cutoff, threshold in parse_configs(args.configs):
                row = json.dumps(measure(model, probs, refs, seconds, beam, cutoff, scorer, threshold=threshold))
                print(row, flush=True)
                out.write(row + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
