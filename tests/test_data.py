"""CSV reading, validation of bad rows, SortaGrad / bucketed batch order, the tf.data batches."""
import csv

import numpy as np
import pytest
import soundfile

from deepspeech_training.data import (DataError, Sample, batch_order, ctc_frames_needed, load_samples,
                                      make_dataset, padding_efficiency)
from deepspeech_training.features import FeatureConfig
from ds_ctcdecoder.alphabet import Alphabet

ALPHABET = Alphabet.from_labels(list(" abcdefghijklmnopqrstuvwxyz'"))


def write_wav(path, seconds, rate=16000, channels=1):
    audio = 0.1 * np.sin(np.linspace(0, 2000, int(seconds * rate)))
    soundfile.write(str(path), np.stack([audio] * channels, 1), rate, subtype="PCM_16")


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["wav_filename", "wav_filesize", "transcript"])
        writer.writerows(rows)


@pytest.fixture
def dataset_dir(tmp_path):
    (tmp_path / "wav").mkdir()
    write_wav(tmp_path / "wav" / "good.wav", 1.0)
    write_wav(tmp_path / "wav" / "stereo44.wav", 0.5, rate=44100, channels=2)
    write_wav(tmp_path / "wav" / "short.wav", 0.1)
    (tmp_path / "wav" / "junk.wav").write_bytes(b"this is not audio at all")
    write_csv(tmp_path / "set.csv", [
        ["wav/good.wav", 0, "hello world"],
        ["wav/missing.wav", 0, "hello"],
        ["wav/junk.wav", 0, "hello"],
        ["wav/good.wav", 0, ""],
        ["wav/good.wav", 0, "hello world!"],
        ["wav/short.wav", 0, "a transcript far too long for a tenth of a second"],
        ["wav/stereo44.wav", 0, "stereo"],
    ])
    return tmp_path


def test_bad_rows_are_named_and_skipped(dataset_dir, caplog):
    samples = load_samples([str(dataset_dir / "set.csv")], ALPHABET, FeatureConfig(), time_stride=2,
                           progress=False)
    assert [s.transcript for s in samples] == ["hello world", "stereo"]
    text = caplog.text
    for line, reason in [(3, "file not found"), (4, "not a readable audio file"), (5, "empty transcript"),
                         (6, "characters not in the alphabet: '!'"), (7, "needs")]:
        assert f"set.csv:{line}" in text and reason in text
    assert "skipped 5 of 7 rows" in text
    stereo = samples[1]
    assert not stereo.native_wav and abs(stereo.duration - 0.5) < 1e-3  # resampled, mixed to mono


def test_fail_fast_names_the_first_bad_row(dataset_dir):
    with pytest.raises(DataError, match=r"set.csv:3 .*missing.wav.*file not found"):
        load_samples([str(dataset_dir / "set.csv")], ALPHABET, FeatureConfig(), 2, fail_fast=True,
                     progress=False)


def test_missing_csv_and_columns(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_samples([str(tmp_path / "nope.csv")], ALPHABET, FeatureConfig(), 2)
    (tmp_path / "bad.csv").write_text("path,text\nx.wav,hi\n")
    with pytest.raises(DataError, match="missing column"):
        load_samples([str(tmp_path / "bad.csv")], ALPHABET, FeatureConfig(), 2)


def test_ctc_frames_needed_counts_repeats():
    assert ctc_frames_needed([1, 2, 3]) == 3
    assert ctc_frames_needed([1, 1, 2, 2, 2]) == 8


def fake_samples(durations):
    return [Sample(f"{i}.wav", "a", (1,), d, True, f"x.csv:{i + 2}") for i, d in enumerate(durations)]


def test_sortagrad_then_shuffled_buckets():
    rng = np.random.default_rng(0)
    samples = fake_samples(rng.uniform(1, 10, 64))
    durations = np.array([s.duration for s in samples])
    first = batch_order(samples, 8, epoch=0, sortagrad=True, seed=1, drop_remainder=True)
    assert np.all(np.diff(durations[first]) >= 0)  # epoch 1: increasing length
    second = batch_order(samples, 8, epoch=1, sortagrad=True, seed=1, drop_remainder=True)
    assert sorted(second) == list(range(64)) and not np.array_equal(first, second)
    assert np.array_equal(second, batch_order(samples, 8, 1, True, 1, True))  # reproducible
    batch_maxima = durations[second].reshape(8, 8).max(1)
    assert not np.all(np.diff(batch_maxima) >= 0)  # batches shuffled
    # bucketing keeps padding low compared with file order
    assert padding_efficiency(samples, second, 8) > 0.85 > padding_efficiency(samples, np.arange(64), 8)


def test_make_dataset_pads_and_keeps_indices(dataset_dir):
    samples = load_samples([str(dataset_dir / "set.csv")], ALPHABET, FeatureConfig(), 2, progress=False)
    (x, xl), (y, yl), idx = next(iter(make_dataset(samples, np.array([1, 0]), FeatureConfig(), 2)))
    assert x.shape == (2, 99, 161) and list(xl.numpy()) == [49, 99]
    assert list(yl.numpy()) == [6, 11] and list(idx.numpy()) == [1, 0]
    assert ALPHABET.decode(y[1, :11].numpy()) == "hello world"
    assert np.all(x[0, 49:].numpy() == 0)
