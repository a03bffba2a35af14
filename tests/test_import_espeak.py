"""Tests of bin/import_espeak.py on tiny English and Mandarin corpora."""
import csv
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import soundfile

SCRIPT = Path(__file__).resolve().parents[1] / "bin" / "import_espeak.py"
SIZES = {"train": 24, "dev": 6, "test": 6}

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("espeak-ng", "sox", "bible")),
    reason="needs espeak-ng, sox and bible-kjv")


def load_importer():
    spec = importlib.util.spec_from_file_location("import_espeak", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


importer = load_importer()


def import_args(out_dir, language, seed=1):
    return [str(out_dir), "--language", language, "--seed", str(seed), "-j", "2",
            "--train_utterances", str(SIZES["train"]), "--dev_utterances", str(SIZES["dev"]),
            "--test_utterances", str(SIZES["test"])]


def read_split(out_dir, split):
    with open(out_dir / f"{split}.csv", encoding="utf-8", newline="") as file:
        return list(csv.reader(file))


def read_rows(out_dir, split):
    header, *rows = read_split(out_dir, split)
    assert header == ["wav_filename", "wav_filesize", "transcript"]
    return rows


def read_alphabet(out_dir):
    text = (out_dir / "alphabet.txt").read_text(encoding="utf-8")
    assert text.endswith("\n")
    labels = [line for line in text.split("\n")[:-1] if not line.startswith("#")]
    assert len(labels) == len(set(labels)) and all(len(label) == 1 for label in labels)
    return labels


@pytest.fixture(scope="module")
def en_corpus(tmp_path_factory):
    """One run through the command line, as `make demo` does."""
    out_dir = tmp_path_factory.mktemp("en")
    subprocess.run([sys.executable, str(SCRIPT), *import_args(out_dir, "en")], check=True,
                   capture_output=True)
    return out_dir


@pytest.fixture(scope="module")
def cmn_corpus(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("cmn")
    importer.main(import_args(out_dir, "cmn"))
    return out_dir


def silence_around_speech(path):
    """Seconds before the first and after the last sample above -45 dBFS."""
    samples, rate = soundfile.read(str(path))
    loud = numpy.flatnonzero(numpy.abs(samples) > 10 ** (-45 / 20))
    return loud[0] / rate, (len(samples) - 1 - loud[-1]) / rate


def check_corpus(out_dir, seconds_per_token, tokenize):
    """CSV rows, WAV format and durations; returns the transcripts per split."""
    transcripts = {}
    for split, size in SIZES.items():
        rows = read_rows(out_dir, split)
        assert len(rows) == size
        for wav_filename, wav_filesize, transcript in rows:
            assert wav_filename.startswith(f"wav/{split}/") and wav_filename.endswith(".wav")
            path = out_dir / wav_filename
            assert path.stat().st_size == int(wav_filesize)
            info = soundfile.info(str(path))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            tokens = len(tokenize(transcript))
            low, high = seconds_per_token
            assert low * tokens + 0.1 < info.duration < high * tokens + 0.3, (transcript, info)
            lead, tail = silence_around_speech(path)
            assert 0.04 < lead < 0.17 and 0.04 < tail < 0.17, (wav_filename, lead, tail)
        transcripts[split] = [row[2] for row in rows]
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not set(transcripts[a]) & set(transcripts[b])
    for split in ("dev", "test"):
        assert len(set(transcripts[split])) == len(transcripts[split])
    assert not list(out_dir.rglob("*.part"))
    return transcripts


def test_english_corpus(en_corpus):
    transcripts = check_corpus(en_corpus, (0.15, 0.6), str.split)
    labels = read_alphabet(en_corpus)
    assert labels == [" "] + list("abcdefghijklmnopqrstuvwxyz") + ["'"]
    for sentences in transcripts.values():
        for sentence in sentences:
            assert set(sentence) <= set(labels)
            assert sentence == " ".join(sentence.split())
            assert 4 <= len(sentence.split()) <= 16
    # Training sentences are unique while there are enough of them.
    assert len(set(transcripts["train"])) == SIZES["train"]


def test_mandarin_corpus(cmn_corpus):
    transcripts = check_corpus(cmn_corpus, (0.15, 0.6), list)
    labels = read_alphabet(cmn_corpus)
    used = set("".join(s for sentences in transcripts.values() for s in sentences))
    assert set(labels) == used
    for sentences in transcripts.values():
        for sentence in sentences:
            assert 4 <= len(sentence) <= 12
            assert all(importer.HAN_RE.fullmatch(c) for c in sentence), sentence


def test_same_seed_gives_the_same_corpus(en_corpus, tmp_path):
    importer.main(import_args(tmp_path, "en"))
    for split in SIZES:
        assert read_split(tmp_path, split) == read_split(en_corpus, split)
    wav_filename = read_rows(en_corpus, "dev")[0][0]
    assert (tmp_path / wav_filename).read_bytes() == (en_corpus / wav_filename).read_bytes()


def test_other_seed_gives_other_sentences_and_voices():
    sentences = [f"sentence number {i}" for i in range(100)]
    plans = []
    for seed in (1, 2):
        splits = importer.split_sentences(sentences, SIZES, seed)
        plans.append(importer.plan_utterances(splits, importer.LANGUAGES["en"], ["en-us", "en-gb"],
                                              ["", "m1", "f2"], seed))
    assert [u.transcript for u in plans[0]] != [u.transcript for u in plans[1]]
    assert [u.espeak_args for u in plans[0]] != [u.espeak_args for u in plans[1]]
    assert len({u.wav_filename for u in plans[0]}) == len(plans[0])


def test_resume_keeps_existing_wavs_and_replaces_missing_ones(en_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(en_corpus, corpus)
    rows = read_rows(corpus, "train")
    missing = corpus / rows[3][0]
    expected = missing.read_bytes()
    missing.unlink()
    (corpus / rows[4][0]).write_bytes(b"")  # an empty WAV counts as missing
    mtimes = {p: p.stat().st_mtime_ns for p in corpus.rglob("*.wav") if p.stat().st_size}
    os.utime(corpus / "dev.csv", ns=(0, 0))
    importer.main(import_args(corpus, "en"))
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert missing.read_bytes() == expected
    assert (corpus / rows[4][0]).stat().st_size > 44
    assert read_rows(corpus, "train") == rows
    assert (corpus / "dev.csv").stat().st_mtime_ns > 0  # CSVs are rewritten


def test_normalize_english():
    assert importer.normalize_english("And the LORD said, Let Beer-sheba be; ") == \
        "and the lord said let beer sheba be"
    assert importer.normalize_english("my brethren' sake, thy father's house") == \
        "my brethren sake thy father's house"
    assert importer.normalize_english("in the 12th year") == ""


def test_split_long_clause_keeps_words_and_limits_length():
    clause = "one two three, four five, six seven eight nine, ten"
    chunks = importer.split_long_clause(clause, 5)
    assert chunks == ["one two three four five", "six seven eight nine ten"]
    assert importer.split_long_clause("a b c", 5) == ["a b c"]


def test_split_sentences_is_disjoint_and_repeats_training_only_when_short():
    sentences = [f"sentence {i}" for i in range(20)]
    splits = importer.split_sentences(sentences, {"train": 30, "dev": 3, "test": 2}, seed=7)
    assert len(splits["train"]) == 30 and set(splits["train"]) == set(sentences) - set(
        splits["dev"]) - set(splits["test"])
    assert splits == importer.split_sentences(sentences[::-1], {"train": 30, "dev": 3, "test": 2},
                                              seed=7)
    with pytest.raises(SystemExit):
        importer.split_sentences(sentences, {"train": 1, "dev": 10, "test": 10}, seed=7)


def test_read_text_detects_gb2312(tmp_path):
    path = tmp_path / "poem"
    path.write_bytes("床前明月光，疑是地上霜。\n".encode("gb2312"))
    assert importer.read_text(path) == "床前明月光，疑是地上霜。\n"
