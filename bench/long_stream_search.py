"""The streaming beam search along one long stream (issue 17: the server keeps a stream up to
``--max_stream_seconds``): the model's outputs on the held-out clips, one after another, fed 16 frames
at a time with a partial every other step (as the server does: ``DecoderState.transcript()``), against
the same clips decoded one by one from a fresh search. Prints, minute by minute, the search's CPU time
per second of audio and the characters the transcript gained (a search that ended at -infinity gains
none), the cost of one partial at the end of the long stream (the server's ``transcript()`` against the
whole Metadata the server built before), and one JSON row.

  .venv/bin/python bench/long_stream_search.py --model runs/uni-server/export/output_graph.tflite \\
      --scorer runs/demo/kenlm.scorer --minutes 10
"""
import argparse
import csv
import json
import time
from pathlib import Path

import jiwer
import numpy as np
import soundfile

import deepspeech
from deepspeech.audio import from_int16
from deepspeech.features import spectrogram
from ds_ctcdecoder import DecoderState, Scorer

CHUNK = 16


def model_outputs(model, test_csv: str, seconds_wanted: float) -> list[tuple[np.ndarray, float, str]]:
    """[(probabilities, seconds of audio, transcript)] of the clips, in order (again from the first if needed)."""
    rows = list(csv.DictReader(open(test_csv, encoding="utf-8")))
    root, parts, total = Path(test_csv).parent, [], 0.0
    while total < seconds_wanted:
        for row in rows:
            audio, rate = soundfile.read(root / row["wav_filename"], dtype="int16")
            probs = model._impl.probs(spectrogram(from_int16(audio), model._impl.framing)).astype(np.float64)
            parts.append((probs, len(audio) / rate, row["transcript"]))
            total += len(audio) / rate
            if total >= seconds_wanted:
                break
    return parts


def search(parts, new_search, fresh_each_clip: bool):
    """-> ([ms of search CPU per s of audio], [characters gained]) for each minute of audio, and the
    whole transcript."""
    cost, gained, spent, chars_before, seconds, texts = [], [], 0.0, 0, 0.0, []
    state, chars = new_search(), 0
    for probs, duration, _ in parts:
        if fresh_each_clip:
            state = new_search()
        began = time.process_time()
        for i, start in enumerate(range(0, len(probs), CHUNK)):
            state.next(probs[start:start + CHUNK])
            if i % 2 == 0:
                state.transcript()
        text = state.decode(1)[0].transcript
        spent += time.process_time() - began
        texts.append(text)
        chars = chars + len(text) if fresh_each_clip else len(text)
        seconds += duration
        if seconds >= 60 * (len(cost) + 1):
            cost.append(round(1000 * spent / 60, 2))
            gained.append(chars - chars_before)
            spent, chars_before = 0.0, chars
    return cost, gained, " ".join(texts) if fresh_each_clip else texts[-1], state


def partial_cost(state, model, repeats: int = 50) -> dict:
    """ms of one partial at the end of the stream: transcript() (the server's now) and the whole Metadata."""
    out = {"characters": len(state.transcript())}
    for name, partial in (("transcript_ms", state.transcript),
                          ("metadata_ms", lambda: str(model._decoding().metadata(state, 1).transcripts[0]))):
        began = time.perf_counter()
        for _ in range(repeats):
            partial()
        out[name] = round(1000 * (time.perf_counter() - began) / repeats, 3)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a streaming export")
    p.add_argument("--test_csv", default="data/espeak-en/test.csv")
    p.add_argument("--scorer", default="")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--beam_width", type=int, default=500)
    p.add_argument("--cutoff_prob", type=float, default=0.999, help="the server's default")
    p.add_argument("--cutoff_top_n", type=int, default=40)
    p.add_argument("--beam_threshold", type=float, default=0.0, help="0: none")
    p.add_argument("--settle_after", type=int, default=0, help="0: never")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    model = deepspeech.Model(args.model)
    alphabet = model._impl.alphabet
    parts = model_outputs(model, args.test_csv, 60 * args.minutes)
    scorer = Scorer(None, None, args.scorer, alphabet) if args.scorer else None

    def new_search():
        return DecoderState(alphabet, args.beam_width, args.cutoff_prob, args.cutoff_top_n, scorer, {},
                            args.beam_threshold, args.settle_after)

    row = {"model": Path(args.model).name, "scorer": args.scorer, "beam_width": args.beam_width,
           "cutoff_prob": args.cutoff_prob, "beam_threshold": args.beam_threshold,
           "settle_after": args.settle_after, "minutes": args.minutes,
           "clips": len(parts)}
    for name, fresh in (("one_stream", False), ("clip_by_clip", True)):
        cost, gained, text, state = search(parts, new_search, fresh)
        wer = round(jiwer.wer(" ".join(ref for _, _, ref in parts), " ".join(text.split())), 4)
        row[name] = {"search_ms_per_audio_s": cost, "chars_gained": gained, "wer": wer}
        print(f"{name}: search ms per s of audio, minute by minute {cost}; characters gained {gained}; WER {wer}")
        if not fresh:
            row[name]["partial_at_end"] = partial_cost(state, model)
            print(f"one partial at the end of the stream: {row[name]['partial_at_end']}")
    print(json.dumps(row))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
