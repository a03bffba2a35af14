"""The ``deepspeech`` client on Mozilla DeepSpeech 0.9 / Coqui STT 1.x exports (.pb, .pbmm, .tflite).

Numpy MFCC against TensorFlow's AudioSpectrogram/Mfcc ops; TensorFlow's memmapped package (writer,
reader, zero-copy loading); then the client against Mozilla's own runtime (util/mozilla_runtime.py)
on the same files: replay graphs (util/replay_graph.py) that feed a known probability matrix through
both, so that streaming, batching and decoding must agree exactly.
"""
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT

sys.path.insert(0, str(ROOT / "util"))

import deepspeech  # noqa: E402
from deepspeech import client, memmapped  # noqa: E402
from deepspeech.errors import DeepSpeechError  # noqa: E402
from deepspeech.mfcc import MfccFeatures, audio_spectrogram, mfcc  # noqa: E402
from ds_ctcdecoder import Alphabet, Scorer, ctc_beam_search_decoder  # noqa: E402
from mozilla_runtime import Runtime, library_path  # noqa: E402
from replay_graph import build_replay_graph_def, replay_audio, write_replay_pb  # noqa: E402

ALPHABET = Alphabet.from_labels(list(" abcdefghijklmnopqrstuvwxyz'"))
BLANK = len(ALPHABET)
needs_deepspeech = pytest.mark.skipif(not library_path("deepspeech").is_file(),
                                      reason="Mozilla's runtime is missing (make install fetches it)")


def clips(seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(7000) / 16000
    return {"noise": rng.normal(0, 0.1, 5000), "tone": 0.3 * np.sin(2 * np.pi * 440 * t) * np.hanning(len(t)),
            "silence": np.zeros(512), "loud": np.clip(rng.normal(0, 0.8, 2000), -1, 1)}


# --- features: TensorFlow's AudioSpectrogram and Mfcc ops in numpy

@pytest.mark.parametrize("name", ["noise", "tone", "silence", "loud"])
def test_numpy_spectrogram_and_mfcc_equal_tensorflows_ops(name):
    audio = clips()[name].astype(np.float32)
    spectrogram = tf.raw_ops.AudioSpectrogram(input=audio[:, None], window_size=512, stride=320,
                                              magnitude_squared=True)
    expected = tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=16000, upper_frequency_limit=8000,
                               lower_frequency_limit=20, filterbank_channel_count=40,
                               dct_coefficient_count=26).numpy()[0]
    ours = audio_spectrogram(audio, 512, 320)
    np.testing.assert_allclose(ours, spectrogram.numpy()[0], rtol=1e-4, atol=1e-12)
    got = mfcc(ours, 16000, 8000, 20, 40, 26)
    assert got.shape == expected.shape == (1 + (len(audio) - 512) // 320, 26)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # the ops' defaults (4000 Hz, 13 coefficients) and other window sizes too
    spectrogram = tf.raw_ops.AudioSpectrogram(input=audio[:, None], window_size=400, stride=160,
                                              magnitude_squared=True)
    expected = tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=16000).numpy()[0]
    got = mfcc(audio_spectrogram(audio, 400, 160), 16000)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_mfcc_frames_in_chunks_are_the_one_shot_frames_plus_mozillas_last_one():
    audio = clips()["noise"].astype(np.float32)  # 5000 samples: 15 full windows, 200 samples left
    features = MfccFeatures()
    whole = features.frames(audio)
    assert whole.shape == (2 + (5000 - 512) // 320, 26)
    np.testing.assert_array_equal(whole[:-1], features.compute(audio))
    padded = np.zeros(512, np.float32)
    padded[:5000 - 15 * 320] = audio[15 * 320:]
    np.testing.assert_array_equal(whole[-1:], features.compute(padded))  # the leftover, zero-padded
    for chunk in (1, 160, 511, 512, 1000):
        stream = features.stream()
        parts = [stream.feed(audio[i:i + chunk]) for i in range(0, len(audio), chunk)] + [stream.finish()]
        np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-6, atol=1e-5)
    assert features.frames(np.zeros(0, np.float32)).shape == (1, 26)  # even an empty stream: one frame


# --- TensorFlow's memmapped package

def mozilla_like_graph_def():
    """A graph with large and small Consts, names that need sanitizing, a string Const."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 300], name="x")
        w1 = tf.constant(np.arange(300 * 40, dtype=np.float32).reshape(300, 40) / 1e4, name="layer_1/weights")
        w2 = tf.constant(np.ones((40, 3000), np.float32) * 0.5, name="layer-1/weights")  # sanitizes alike
        b = tf.constant(np.arange(40, dtype=np.float32), name="layer_1/bias")  # 160 bytes: stays inline
        tf.constant([b"\x01\x00abc"], name="metadata_alphabet")
        tf.identity(tf.matmul(tf.matmul(x, w1) + b, w2), name="out")
    return g.as_graph_def()


def test_memmapped_package_layout(tmp_path):
    from tensorflow.core.util import memmapped_file_system_pb2

    graph_def = mozilla_like_graph_def()
    path = tmp_path / "m.pbmm"
    assert memmapped.write_memmapped(graph_def, path, min_bytes=10000) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["m.pbmm"]  # written aside, then renamed
    data = path.read_bytes()
    (directory_offset,) = struct.unpack("<Q", data[-8:])
    directory = memmapped_file_system_pb2.MemmappedFileSystemDirectory.FromString(data[directory_offset:-8])
    assert [(e.name, e.length) for e in directory.element] == [
        ("memmapped_package://layer_1_weights", 300 * 40 * 4), ("memmapped_package://layer_1_weights_", 40 * 3000 * 4),
        ("memmapped_package://.", directory.element[2].length)]
    assert [e.offset % 64 for e in directory.element[:2]] == [0, 0] and directory.element[0].offset == 0
    assert memmapped.encode_directory(memmapped.decode_directory(data[directory_offset:-8])) == \
        directory.SerializeToString()
    read, regions = memmapped.read_memmapped(path)
    nodes = {n.name: n for n in read.node}
    weights = nodes["layer_1/weights"]
    assert weights.op == "ImmutableConst" and sorted(weights.attr) == ["dtype", "memory_region_name", "shape"]
    assert weights.attr["memory_region_name"].s == b"memmapped_package://layer_1_weights"
    assert nodes["layer_1/bias"].op == "Const" and nodes["metadata_alphabet"].op == "Const"
    offset, length = regions["memmapped_package://layer_1_weights"]
    np.testing.assert_array_equal(np.frombuffer(data[offset:offset + length], np.float32).reshape(300, 40),
                                  tf.make_ndarray(graph_def.node[1].attr["value"].tensor))
    assert memmapped.is_memmapped(path) and not memmapped.is_memmapped(tmp_path / "m.pbmm.missing")


def test_memmapped_reader_takes_a_missing_length_from_the_next_offset(tmp_path):
    path = tmp_path / "m.pbmm"
    memmapped.write_memmapped(mozilla_like_graph_def(), path)
    data = path.read_bytes()
    (directory_offset,) = struct.unpack("<Q", data[-8:])
    regions = memmapped.decode_directory(data[directory_offset:-8])
    no_lengths = [memmapped.Region(r.name, r.offset, 0) for r in regions]
    path.write_bytes(data[:directory_offset] + memmapped.encode_directory(no_lengths)
                     + struct.pack("<Q", directory_offset))
    got = memmapped.read_directory(path)
    assert [r.length for r in got] == [regions[1].offset - regions[0].offset,
                                       regions[2].offset - regions[1].offset, directory_offset - regions[2].offset]
    assert memmapped.read_memmapped(path)[0].node[-1].name == "out"


@pytest.mark.parametrize("cut", [8, 100, 50000])
def test_a_truncated_package_is_not_one(tmp_path, cut):
    path = tmp_path / "m.pbmm"
    memmapped.write_memmapped(mozilla_like_graph_def(), path)
    path.write_bytes(path.read_bytes()[:-cut])
    assert not memmapped.is_memmapped(path)
    with pytest.raises(memmapped.MemmappedError, match=f"{path}: not a memmapped package"):
        memmapped.read_memmapped(path)
