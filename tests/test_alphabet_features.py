"""Mozilla's alphabet format and the spectrogram features."""
import numpy as np
import pytest
import tensorflow as tf

from deepspeech_training.features import FeatureConfig, resample, spectrogram
from ds_ctcdecoder.alphabet import Alphabet, AlphabetError


def test_mozilla_alphabet_file(tmp_path):
    path = tmp_path / "alphabet.txt"
    path.write_bytes("# comment\r\n \r\na\r\n\\#\r\nb\n".encode())
    alphabet = Alphabet.from_file(str(path))
    assert alphabet.labels == [" ", "a", "#", "b"]
    assert alphabet.encode("a #b") == [1, 0, 2, 3] and alphabet.decode([1, 0, 2, 3]) == "a #b"
    assert alphabet.blank_id == 4
    with pytest.raises(AlphabetError, match="'z'"):
        alphabet.encode("az")


def test_project_english_alphabet_has_28_labels():
    labels = Alphabet.from_file("data/alphabet.txt").labels
    assert labels[0] == " " and labels[-1] == "'" and len(labels) == 28


def test_alphabet_from_transcripts_and_back(tmp_path):
    alphabet = Alphabet.from_transcripts(["床前明月光", "明月"])
    assert alphabet.labels[:2] == ["明", "月"]
    alphabet.to_file(str(tmp_path / "a.txt"), comment="built from test")
    assert Alphabet.from_file(str(tmp_path / "a.txt")) == alphabet


def test_spectrogram_frames_and_bins():
    cfg = FeatureConfig()
    audio = tf.random.uniform([16000], -1, 1)
    spec = spectrogram(audio, cfg)
    assert spec.shape == (cfg.num_frames(16000), 161) == (99, 161)
    # a 1 kHz tone peaks in bin 1000 / (16000 / 320) = 20
    tone = tf.sin(2 * np.pi * 1000 * tf.range(16000, dtype=tf.float32) / 16000)
    assert int(tf.argmax(tf.reduce_mean(spectrogram(tone, cfg), 0))) == 20
    assert spectrogram(tf.zeros([100]), cfg).shape[0] == 1  # shorter than a window


def test_feature_config_rejects_fractional_windows():
    with pytest.raises(ValueError, match="whole number"):
        FeatureConfig(sample_rate=11025, win_len_ms=20)


def test_resample_keeps_a_tone():
    t = np.arange(8000) / 8000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    up = resample(tone, 8000, 16000)
    assert len(up) == 16000
    expected = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.abs(up[100:-100] - expected[100:-100]).max() < 0.01
