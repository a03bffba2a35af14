#!/usr/bin/env python3
"""Import a deterministic synthetic speech corpus spoken by espeak-ng.

English text is the public-domain King James Bible (Debian ``bible-kjv``), Mandarin text the
Tang and Song poems of Debian ``fortunes-zh``. Sentences are split into train/dev/test by text
(no sentence is in two splits) and spoken by many espeak-ng voices, variants, speeds and
pitches, chosen per utterance from ``--seed``. Output follows the Mozilla DeepSpeech importers:
``OUT_DIR/{train,dev,test}.csv`` (``wav_filename,wav_filesize,transcript``, paths relative to
the CSV), 16 kHz mono 16-bit WAVs under ``OUT_DIR/wav/<split>/`` and ``OUT_DIR/alphabet.txt``.
Re-running resumes: WAVs that already exist are kept.
"""
import argparse
import collections
import concurrent.futures
import csv
import functools
import hashlib
import io
import os
import random
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

import soundfile
from tqdm import tqdm

from deepspeech_training.util.log import log, setup_logging

SAMPLE_RATE = 16000
SPLITS = ("train", "dev", "test")
FORTUNES_DIR = "/usr/share/games/fortunes"
POEM_FILES = ("tang300", "song100")
PITCH_RANGE = (30, 70)
WORD_GAP_RANGE = (0, 2)  # espeak-ng -g, in units of 10 ms
PAD_RANGE_S = (0.05, 0.15)  # silence kept before and after the trimmed speech
# espeak-ng variants that still sound like speech (no whisper, croak, robots, effects).
SPEECH_VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 klatt klatt2 klatt3 klatt4 Alex Andy Annie "
    "adam belinda benjamin david ed edward grandma grandpa john linda max michel paul "
    "quincy rob robert steph travis victor").split()
HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
HAN_RE = re.compile(f"[{HAN}]")
ENGLISH_ALPHABET = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"]


@dataclass(frozen=True)
class Language:
    voices: tuple  # espeak-ng voices, used where installed (mbrola ones never)
    speed_range: tuple  # espeak-ng -s, words per minute
    length_range: tuple  # sentence length in tokens: words (en) or characters (cmn)
    vocab_size: int  # default --vocab_size
    tokenize: Callable[[str], list]


LANGUAGES = {
    "en": Language(("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan",
                    "en-gb-x-gbcwmd", "en-029", "en-us-nyc"), (140, 200), (4, 16), 1000, str.split),
    # Debian's espeak-ng 1.51 'cmn' voice reads tone numbers in English ("chun one");
    # the pinyin voice speaks Han text correctly (espeak-ng issue #1028).
    "cmn": Language(("cmn-latn-pinyin",), (130, 180), (4, 12), 1500, list),
}


# ----------------------------------------------------------------------------- text
def normalize_english(text):
    """Lower case a-z, apostrophe and single spaces; '' when the text holds a digit."""
    if re.search(r"\d", text):
        return ""
    text = re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " "))
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


def split_long_clause(clause, max_words):
    """Group comma-separated pieces of a clause into chunks of at most max_words words."""
    if len(clause.split()) <= max_words:
        return [clause]
    chunks, words = [], []
    for piece in clause.split(","):
        piece_words = piece.split()
        if words and len(words) + len(piece_words) > max_words:
            chunks.append(" ".join(words))
            words = []
        words += piece_words
    return chunks + [" ".join(words)]


@functools.lru_cache(maxsize=4)  # tests import several corpora in one process
def english_sentences(min_words, max_words):
    """Unique normalized clauses of the King James Bible, in Bible order."""
    # -f turns pretty-printing off: one "Ge1:1 text" line per verse; the range is everything.
    dump = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True,
                          capture_output=True, text=True).stdout
    sentences = []
    for line in dump.splitlines():
        verse = line.partition(" ")[2]
        for clause in re.split(r"[.;:?!()]", verse):
            for chunk in split_long_clause(clause, max_words):
                sentence = normalize_english(chunk)
                if min_words <= len(sentence.split()) <= max_words:
                    sentences.append(sentence)
    return tuple(dict.fromkeys(sentences))


def read_text(path):
    """Decode a fortunes file that may be UTF-8 or GB2312 (GB18030 is a superset)."""
    with open(path, "rb") as file:
        raw = file.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("gb18030")


@functools.lru_cache(maxsize=4)
def mandarin_sentences(min_chars, max_chars):
    """Unique Han-only clauses of the Tang and Song poems, in file order."""
    sentences = []
    for name in POEM_FILES:
        for line in read_text(os.path.join(FORTUNES_DIR, name)).splitlines():
            if "\x1b" in line:  # titles and authors are the ANSI-coloured lines
                continue
            for clause in re.split(r"[，。、；：？！,.;:?!「」『』《》（）()“”‘’—…·\s]+", line):
                sentence = "".join(HAN_RE.findall(clause))
                if min_chars <= len(sentence) <= max_chars:
                    sentences.append(sentence)
    return tuple(dict.fromkeys(sentences))


def drop_unspeakable(sentences, voice):
    """Drop sentences with a character espeak-ng spells out in another language."""
    characters = sorted(set("".join(sentences)))
    # One character per clause; -x prints one phoneme line per clause, '(en)' marks fallbacks.
    phonemes = subprocess.run(["espeak-ng", "-q", "-x", "-v", voice], check=True, text=True,
                              input="".join(c + "。\n" for c in characters),
                              capture_output=True).stdout.splitlines()
    if len(phonemes) != len(characters):
        raise RuntimeError(f"espeak-ng gave {len(phonemes)} lines for {len(characters)} characters")
    unspeakable = {c for c, line in zip(characters, phonemes) if "(" in line}
    return [s for s in sentences if not unspeakable.intersection(s)]


def rank_tokens(sentences, tokenize):
    """Tokens (words or characters) from most to least frequent; ties alphabetically."""
    counts = collections.Counter(t for s in sentences for t in tokenize(s))
    return [token for token, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def filter_by_vocabulary(sentences, tokenize, ranked_tokens, vocab_size):
    """Keep sentences made only of the vocab_size most frequent tokens (0: keep all)."""
    if vocab_size <= 0:
        return list(sentences)
    vocabulary = set(ranked_tokens[:vocab_size])
    return [s for s in sentences if vocabulary.issuperset(tokenize(s))]


def split_sentences(sentences, sizes, seed):
    """Shuffle and split by sentence; train repeats sentences only when too few are left."""
    shuffled = sorted(sentences)
    random.Random(seed).shuffle(shuffled)
    dev = shuffled[:sizes["dev"]]
    test = shuffled[len(dev):len(dev) + sizes["test"]]
    pool = shuffled[len(dev) + len(test):]
    if len(dev) + len(test) < sizes["dev"] + sizes["test"] or (sizes["train"] and not pool):
        raise SystemExit(f"Only {len(sentences)} unique sentences: ask for fewer utterances "
                         "or a larger --vocab_size")
    if sizes["train"] > len(pool):
        log.warning("Only %d unique training sentences for %d utterances: repeating them with "
                    "other voices", len(pool), sizes["train"])
    train = [pool[i % len(pool)] for i in range(sizes["train"])]
    splits = {"train": train, "dev": dev, "test": test}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not set(splits[a]) & set(splits[b]), f"{a} and {b} share sentences"
    return splits


# ----------------------------------------------------------------------------- speech
@dataclass(frozen=True)
class Utterance:
    split: str
    index: int
    transcript: str
    espeak_args: tuple
    pads: tuple  # seconds of silence before and after the speech

    @property
    def wav_filename(self):
        """Relative path; the hash of what is synthesized keeps resumes from reusing stale WAVs."""
        key = "\0".join(self.espeak_args + (self.transcript, repr(self.pads)))
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
        return f"wav/{self.split}/{self.index:06d}-{digest}.wav"


def installed_voices(language):
    """The language's espeak-ng voices and the speech-like variants that are installed."""
    listing = subprocess.run(["espeak-ng", "--voices"], check=True, capture_output=True,
                             text=True).stdout.splitlines()[1:]
    # Columns: Pty Language Age/Gender VoiceName File ...; mbrola voices (mb/) need mbrola.
    rows = [line.split() for line in listing if len(line.split()) >= 5]
    languages = {row[1] for row in rows if not row[4].startswith("mb/")}
    voices = [v for v in language.voices if v in languages]
    if not voices:
        raise SystemExit(f"None of the espeak-ng voices {language.voices} is installed")
    listing = subprocess.run(["espeak-ng", "--voices=variant"], check=True, capture_output=True,
                             text=True).stdout.splitlines()[1:]
    files = {line.split()[4][len("!v/"):] for line in listing if len(line.split()) >= 5}
    variants = [""] + [v for v in SPEECH_VARIANTS if v in files]
    return voices, variants


def plan_utterances(splits, language, voices, variants, seed):
    """Pick voice, variant, speed, pitch, word gap and padding per utterance from the seed."""
    utterances = []
    for split in SPLITS:
        for index, transcript in enumerate(splits[split]):
            rng = random.Random(f"{seed}/{split}/{index}")  # stable when other splits change
            voice = rng.choice(voices)
            variant = rng.choice(variants)
            args = ("-v", f"{voice}+{variant}" if variant else voice,
                    "-s", str(rng.randint(*language.speed_range)),
                    "-p", str(rng.randint(*PITCH_RANGE)), "-g", str(rng.randint(*WORD_GAP_RANGE)))
            pads = tuple(round(rng.uniform(*PAD_RANGE_S), 3) for _ in range(2))
            utterances.append(Utterance(split, index, transcript, args, pads))
    return utterances


def synthesize(utterance, out_dir):
    """Write the utterance's WAV unless it exists; True when it was generated."""
    path = os.path.join(out_dir, utterance.wav_filename)
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        return False
    partial = path + ".part"
    espeak = subprocess.Popen(["espeak-ng", "--stdout", *utterance.espeak_args,
                               utterance.transcript], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    # Trim leading and trailing silence (silence + reverse twice), resample to 16 kHz, peak
    # normalise, pad. -D: no dither, so the output bytes are deterministic.
    trim = ["silence", "1", "0.01", "-50d"]
    sox = subprocess.Popen(["sox", "-q", "-D", "-t", "wav", "-", "-t", "wav", "-r",
                            str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
                            partial, *trim, "reverse", *trim, "reverse", "rate", "-h",
                            str(SAMPLE_RATE), "gain", "-n", "-3", "pad", *map(str, utterance.pads)],
                           stdin=espeak.stdout, stderr=subprocess.PIPE)
    espeak.stdout.close()  # so espeak-ng gets SIGPIPE instead of blocking if sox dies
    _, sox_error = sox.communicate()
    _, espeak_error = espeak.communicate()
    if espeak.returncode != 0 or sox.returncode != 0:
        if os.path.exists(partial):
            os.remove(partial)
        errors = (espeak_error + sox_error).decode(errors="replace")
        raise RuntimeError(f"Synthesis failed for {utterance}: {errors}")
    os.replace(partial, path)  # a killed run never leaves a truncated WAV under the final name
    return True


def synthesize_all(utterances, out_dir, workers):
    """Synthesize in parallel (threads wait on the espeak-ng | sox processes)."""
    for split in SPLITS:
        os.makedirs(os.path.join(out_dir, "wav", split), exist_ok=True)
    generated = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(synthesize, u, out_dir) for u in utterances]
        try:
            for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures),
                               desc="Synthesizing", unit="utt", disable=None):
                generated += future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return generated


# ----------------------------------------------------------------------------- output
def write_text_atomically(path, text):
    """Write via a temporary name, so readers never see a half-written file."""
    partial = path + ".part"
    with open(partial, "w", encoding="utf-8", newline="") as file:
        file.write(text)
    os.replace(partial, path)


def write_csvs(utterances, out_dir):
    """Write the Mozilla CSVs; returns the hours of audio per split."""
    hours = {}
    for split in SPLITS:
        table, seconds = io.StringIO(), 0.0
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(("wav_filename", "wav_filesize", "transcript"))
        for utterance in (u for u in utterances if u.split == split):
            path = os.path.join(out_dir, utterance.wav_filename)
            seconds += soundfile.info(path).duration
            writer.writerow((utterance.wav_filename, os.path.getsize(path), utterance.transcript))
        write_text_atomically(os.path.join(out_dir, f"{split}.csv"), table.getvalue())
        hours[split] = seconds / 3600
    return hours


def write_alphabet(path, language_code, transcripts):
    """Mozilla alphabet: one label per line, '#' comments, ends with a newline."""
    if language_code == "en":
        labels = ENGLISH_ALPHABET
    else:  # most frequent first, so the common labels get the small ids
        labels = rank_tokens(transcripts, list)
    header = (f"# Alphabet of the espeak-ng '{language_code}' corpus made by import_espeak.py.\n"
              "# One label per line; lines starting with # are comments.\n")
    write_text_atomically(path, header + "".join(f"{label}\n" for label in labels))


# ----------------------------------------------------------------------------- main
def load_sentences(language_code, language, vocab_size):
    """The unique sentences of the language that survive the vocabulary filter."""
    min_length, max_length = language.length_range
    if language_code == "en":
        sentences = english_sentences(min_length, max_length)
    else:
        sentences = drop_unspeakable(mandarin_sentences(min_length, max_length),
                                     language.voices[0])
    ranked = rank_tokens(sentences, language.tokenize)
    for size in (500, 1000, 2000, 4000):  # to choose --vocab_size
        kept = filter_by_vocabulary(sentences, language.tokenize, ranked, size)
        log.info("%d unique sentences use only the %d most frequent tokens", len(kept), size)
    kept = filter_by_vocabulary(sentences, language.tokenize, ranked, vocab_size)
    log.info("Using %d of %d unique %s sentences (--vocab_size %d)", len(kept), len(sentences),
             language_code, vocab_size)
    return kept


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", help="Output folder for the CSVs, alphabet.txt and wav/")
    parser.add_argument("--language", choices=sorted(LANGUAGES), default="en",
                        help="en: King James Bible text; cmn: Tang/Song poems, Han characters "
                             "(default: %(default)s)")
    parser.add_argument("--train_utterances", type=int, default=6000,
                        help="Utterances in train.csv (default: %(default)s)")
    parser.add_argument("--dev_utterances", type=int, default=300,
                        help="Utterances in dev.csv, unique sentences (default: %(default)s)")
    parser.add_argument("--test_utterances", type=int, default=300,
                        help="Utterances in test.csv, unique sentences (default: %(default)s)")
    parser.add_argument("--vocab_size", type=int, default=None,
                        help="Keep only sentences made of this many most frequent words (en) "
                             "or characters (cmn); 0 keeps all (default: en 1000, cmn 1500)")
    parser.add_argument("--seed", type=int, default=1,
                        help="Seed of the split and of the voices (default: %(default)s)")
    parser.add_argument("-j", "--workers", type=int, default=os.cpu_count() or 1,
                        help="Parallel espeak-ng | sox pipelines (default: CPU count)")
    parser.add_argument("--log_level", type=int, default=1,
                        help="0 DEBUG, 1 INFO, 2 WARNING, 3 ERROR (default: %(default)s)")
    args = parser.parse_args(argv)
    sizes = (args.train_utterances, args.dev_utterances, args.test_utterances)
    if min(sizes) < 0 or args.workers < 1:
        parser.error("utterance counts must be >= 0 and --workers >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    setup_logging(args.log_level)
    start = time.monotonic()
    language = LANGUAGES[args.language]
    tools = ("espeak-ng", "sox") + (("bible",) if args.language == "en" else ())
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"Missing programs {missing}: apt-get install espeak-ng sox bible-kjv")
    vocab_size = language.vocab_size if args.vocab_size is None else args.vocab_size
    sentences = load_sentences(args.language, language, vocab_size)
    sizes = {"train": args.train_utterances, "dev": args.dev_utterances,
             "test": args.test_utterances}
    splits = split_sentences(sentences, sizes, args.seed)
    voices, variants = installed_voices(language)
    log.info("Voices %s with %d variants", " ".join(voices), len(variants))
    utterances = plan_utterances(splits, language, voices, variants, args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    synth_start = time.monotonic()
    generated = synthesize_all(utterances, args.out_dir, args.workers)
    synth_seconds = time.monotonic() - synth_start
    log.info("Generated %d WAVs (%d already there) in %.1f s: %.1f utterances/s with %d workers",
             generated, len(utterances) - generated, synth_seconds,
             generated / max(synth_seconds, 1e-9), args.workers)
    hours = write_csvs(utterances, args.out_dir)
    held_out = set(splits["dev"]) | set(splits["test"])  # the LM never sees a dev or test sentence
    lm_text = [s for s in sentences if s not in held_out]
    write_text_atomically(os.path.join(args.out_dir, "lm.txt"), "".join(f"{s}\n" for s in lm_text))
    write_alphabet(os.path.join(args.out_dir, "alphabet.txt"), args.language,
                   [u.transcript for u in utterances])
    log.info("Imported %s corpus to %s: %s; %.1f s", args.language, args.out_dir,
             ", ".join(f"{s} {len(splits[s])} utterances {hours[s]:.2f} h" for s in SPLITS),
             time.monotonic() - start)
    log.info("Language model text (every sentence but dev and test): %s, %d sentences",
             os.path.join(args.out_dir, "lm.txt"), len(lm_text))


if __name__ == "__main__":
    main()
