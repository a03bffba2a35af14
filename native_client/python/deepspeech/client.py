"""The ``deepspeech`` command: Mozilla DeepSpeech 0.9's client (flags, messages and JSON output).

    deepspeech --model output_graph.tflite --scorer kenlm.scorer --audio a.wav [--json]

The transcript goes to stdout; progress, timings and warnings to stderr. Audio in any format libsndfile
reads, at any rate (resampled to the model's, with a warning). Errors print one line and exit with
status 1.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from timeit import default_timer as timer

from ds_ctcdecoder import ScorerError

from . import Model, version
from .audio import AudioError, read_audio, resample, to_int16
from .errors import DeepSpeechError

log = logging.getLogger("deepspeech")
STREAM_UNIT = 160  # Mozilla's client: stream chunk sizes are multiples of 160 samples (10 ms at 16 kHz)


def stream_size(text: str) -> int:
    size = int(text)
    if size <= 0 or size % STREAM_UNIT:
        raise argparse.ArgumentTypeError(f"Stream buffer size must be multiples of {STREAM_UNIT}")
    return size


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deepspeech", description="Running DeepSpeech inference.")
    parser.add_argument("--model", required=True,
                        help="Path to the model (.pb, .pbmm, .tflite or a SavedModel directory)")
    parser.add_argument("--scorer", required=False, help="Path to the external scorer file")
    parser.add_argument("--audio", required=True, help="Path to the audio file to run (WAV or any format "
                                                       "libsndfile reads)")
    parser.add_argument("--beam_width", type=positive_int, help="Beam width for the CTC decoder")
    parser.add_argument("--lm_alpha", type=float, help="Language model weight (lm_alpha). If not specified, "
                                                       "use default from the scorer package.")
    parser.add_argument("--lm_beta", type=float, help="Word insertion bonus (lm_beta). If not specified, "
                                                      "use default from the scorer package.")
    parser.add_argument("--version", action="version", version=f"DeepSpeech {version()}",
                        help="Print version and exits")
    parser.add_argument("--extended", action="store_true", help="Output string from extended metadata")
    parser.add_argument("--json", action="store_true",
                        help="Output json from metadata with timestamp of each word")
    parser.add_argument("--candidate_transcripts", type=positive_int, default=3,
                        help="Number of candidate transcripts to include in JSON output")
    parser.add_argument("--hot_words", type=str, help="Hot-words and their boosts: word:boost,word2:boost")
    parser.add_argument("--stream", type=stream_size, metavar="SIZE",
                        help="Run in stream mode, feeding SIZE samples at a time and printing "
                             "intermediate transcripts as they change")
    parser.add_argument("--extended_stream", type=stream_size, metavar="SIZE",
                        help="As --stream, the intermediate transcripts from extended metadata")
    return parser.parse_args(argv)


def words_from_candidate_transcript(transcript) -> list[dict]:
    """Words (split at spaces) with their start time and duration in seconds, as Mozilla's client:
    a word lasts from its first character to the token that ends it (the space after it, or its last
    character at the end of the transcript)."""
    words, word, start = [], "", 0.0
    tokens = transcript.tokens
    for i, token in enumerate(tokens):
        if token.text != " ":
            if not word:
                start = token.start_time
            word += token.text
        if token.text == " " or i == len(tokens) - 1:
            if word:
                words.append({"word": word, "start_time": round(start, 4),
                              "duration": round(max(token.start_time - start, 0.0), 4)})
            word = ""
    return words


def metadata_to_string(transcript) -> str:
    return "".join(token.text for token in transcript.tokens)


def metadata_json_output(metadata) -> str:
    return json.dumps({"transcripts": [
        {"confidence": transcript.confidence, "words": words_from_candidate_transcript(transcript)}
        for transcript in metadata.transcripts]}, indent=2, ensure_ascii=False)


def parse_hot_words(text: str) -> list[tuple[str, float]]:
    pairs = []
    for item in text.split(","):
        word, sep, boost = item.rpartition(":")
        try:
            if not sep or not word.strip():
                raise ValueError
            pairs.append((word.strip(), float(boost)))
        except ValueError:
            raise ValueError(f"--hot_words: {item!r} is not word:boost (e.g. --hot_words 'cat:5.5,dog:-2')") \
                from None
    return pairs


def load_model(args) -> Model:
    print(f"Loading model from file {args.model}", file=sys.stderr)
    start = timer()
    model = Model(args.model)
    print(f"Loaded model in {timer() - start:.3}s.", file=sys.stderr)
    if args.beam_width:
        model.setBeamWidth(args.beam_width)
    if args.scorer:
        print(f"Loading scorer from files {args.scorer}", file=sys.stderr)
        start = timer()
        model.enableExternalScorer(args.scorer)
        print(f"Loaded scorer in {timer() - start:.3}s.", file=sys.stderr)
        if args.lm_alpha is not None or args.lm_beta is not None:
            scorer = model._scorer
            model.setScorerAlphaBeta(scorer.alpha if args.lm_alpha is None else args.lm_alpha,
                                     scorer.beta if args.lm_beta is None else args.lm_beta)
    elif args.lm_alpha is not None or args.lm_beta is not None:
        log.warning("--lm_alpha and --lm_beta have no effect without --scorer")
    if args.hot_words:
        print("Adding hot-words", file=sys.stderr)
        for word, boost in parse_hot_words(args.hot_words):
            model.addHotWord(word, boost)
    return model


def load_samples(path: str, sample_rate: int):
    """The file as int16 samples at the model's rate, and its duration in seconds."""
    audio, rate = read_audio(path)
    if rate != sample_rate:
        log.warning("original sample rate (%d) is different than %dhz. Resampling might produce erratic "
                    "speech recognition.", rate, sample_rate)
        audio = resample(audio, rate, sample_rate)
    return to_int16(audio), len(audio) / sample_rate


def output(args, metadata) -> str:
    if args.json:
        return metadata_json_output(metadata)
    return metadata_to_string(metadata.transcripts[0])


def run_stream(model: Model, audio, args) -> str:
    """Feed the audio ``SIZE`` samples at a time; print each intermediate transcript that differs from
    the last one printed; return the final result."""
    size = args.stream or args.extended_stream
    stream, last = model.createStream(), None
    for offset in range(0, len(audio), size):
        stream.feedAudioContent(audio[offset:offset + size])
        if args.extended_stream:
            partial = metadata_to_string(stream.intermediateDecodeWithMetadata(1).transcripts[0])
        else:
            partial = stream.intermediateDecode()
        if partial != last:
            print(partial, flush=True)
            last = partial
    return output(args, stream.finishStreamWithMetadata(args.candidate_transcripts if args.json else 1))


def run(args) -> None:
    model = load_model(args)
    audio, duration = load_samples(args.audio, model.sampleRate())
    print("Running inference.", file=sys.stderr)
    start = timer()
    if args.stream or args.extended_stream:
        print(run_stream(model, audio, args))
    elif args.json:
        print(metadata_json_output(model.sttWithMetadata(audio, args.candidate_transcripts)))
    elif args.extended:
        print(metadata_to_string(model.sttWithMetadata(audio, 1).transcripts[0]))
    else:
        print(model.stt(audio))
    print(f"Inference took {timer() - start:0.3f}s for {duration:0.3f}s audio file.", file=sys.stderr)


USER_ERRORS = (DeepSpeechError, AudioError, ScorerError, ValueError, TypeError, OSError)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow formats: no TF info lines on stderr
    try:
        run(args)
    except USER_ERRORS as err:
        print(f"deepspeech: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
