"""The ``deepspeech`` client on Mozilla DeepSpeech 0.9 / Coqui STT 1.x exports (.pb, .pbmm, .tflite).

Numpy MFCC against TensorFlow's AudioSpectrogram/Mfcc ops; TensorFlow's memmapped package (writer,
reader, zero-copy loading); then the client against Mozilla's own runtime (util/mozilla_runtime.py)
on the same files: replay graphs (util/replay_graph.py) that feed a known probability matrix through
both, so that streaming, batching and decoding must agree exactly.
"""
import json
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
from ds_ctcdecoder import Alphabet, ctc_beam_search_decoder  # noqa: E402
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


# --- replay graphs: the client and Mozilla's runtime on the same file

def matrix(frames):
    """[T, C] probabilities from frames, each {label or 'blank': probability}; the rest spread evenly."""
    probs = np.zeros((len(frames), BLANK + 1), np.float32)
    for t, frame in enumerate(frames):
        ids = {BLANK if k == "blank" else ALPHABET.EncodeSingle(k): v for k, v in frame.items()}
        probs[t] = (1.0 - sum(ids.values())) / (BLANK + 1 - len(ids))
        for i, v in ids.items():
            probs[t, i] = v
    return probs


def noisy(rng, text):
    """A noisy model saying ``text``: each character peaks weakly on one frame of three."""
    logits = rng.normal(0.0, 1.5, (3 * len(text), BLANK + 1))
    for i, ch in enumerate(text):
        logits[3 * i, ALPHABET.EncodeSingle(ch)] += 3.0
        logits[3 * i + 1:3 * i + 3, BLANK] += 3.0
    probs = np.exp(logits)
    return (probs / probs.sum(1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def replays(tmp_path_factory):
    """{name: (probs, .pb path, .pbmm path)}: replay graphs, as a frozen GraphDef and as TensorFlow's
    memmapped package (the replayed matrix mapped from the file)."""
    tmp, out = tmp_path_factory.mktemp("replay"), {}
    rng = np.random.default_rng(11)
    spelled = matrix([f for ch in "the quick brown fox jumps" for f in ({ch: 0.9}, {"blank": 0.9})])
    for name, probs in [("spelled", spelled), ("noisy", noisy(rng, "the cat sat on the mat")),
                        ("short", noisy(rng, "a"))]:
        write_replay_pb(probs, ALPHABET, tmp / f"{name}.pb")
        memmapped.write_memmapped(build_replay_graph_def(probs, ALPHABET), tmp / f"{name}.pbmm", min_bytes=1000)
        out[name] = (probs, tmp / f"{name}.pb", tmp / f"{name}.pbmm")
    return out


def test_replay_models_give_the_matrix_to_the_decoder(replays):
    probs, pb, pbmm_path = replays["noisy"]
    for path in (pb, pbmm_path):
        model = deepspeech.Model(str(path))
        assert model.sampleRate() == 16000 and model.beamWidth() == 500
        assert model._impl.metadata["model_format"] == path.suffix[1:]
        model.setBeamWidth(64)
        [(confidence, text)] = ctc_beam_search_decoder(probs, ALPHABET, 64, cutoff_top_n=40)
        result = model.sttWithMetadata(replay_audio(len(probs)), 1).transcripts[0]
        assert str(result) == text and result.confidence == pytest.approx(confidence, abs=1e-4)
        assert model._impl.probs(model._impl.features(np.zeros(512 + 320 * 5, np.float32))).shape == (7, 29)


def test_pbmm_weights_are_mapped_from_the_file(replays):
    _, _, pbmm_path = replays["spelled"]
    model = deepspeech.Model(str(pbmm_path))
    [table] = model._impl.runner.function.weights
    address = np.from_dlpack(_Capsule(table)).__array_interface__["data"][0]
    with open("/proc/self/maps") as f:
        ranges = [line.split() for line in f if line.rstrip().endswith(str(pbmm_path))]
    _, regions = memmapped.read_memmapped(pbmm_path)
    [(offset, _)] = regions.values()
    in_file = [address - int(r[0].split("-")[0], 16) + int(r[2], 16) for r in ranges
               if int(r[0].split("-")[0], 16) <= address < int(r[0].split("-")[1], 16)]
    assert in_file == [offset]


class _Capsule:
    def __init__(self, tensor):
        self.capsule = tf.experimental.dlpack.to_dlpack(tensor)

    def __dlpack__(self, **_):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)


@needs_deepspeech
@pytest.mark.parametrize("suffix", ["pb", "pbmm"])
def test_transcripts_and_token_times_equal_mozillas_runtime(replays, suffix):
    runtime = Runtime("deepspeech")
    for name, (probs, *paths) in replays.items():
        path = str(paths[suffix == "pbmm"])
        ours = deepspeech.Model(path)
        with runtime.model(path) as theirs:
            for frames in sorted({1, 15, 16, 17, len(probs) - 1, len(probs), len(probs) + 3}):
                audio = replay_audio(max(frames, 1))
                for beam in (1, 100):
                    ours.setBeamWidth(beam)
                    theirs.set_beam_width(beam)
                    mine = ours.sttWithMetadata(audio, 3).transcripts
                    reference = theirs.stt_with_metadata(audio, 3)
                    where = (name, frames, beam)
                    assert [str(c) for c in mine] == [c.text for c in reference], where
                    assert [c.confidence for c in mine] == pytest.approx([c.confidence for c in reference],
                                                                         abs=1e-3), where
                    assert [[t.timestep for t in c.tokens] for c in mine] == \
                        [[t.timestep for t in c.tokens] for c in reference], where
                    assert [t.start_time for t in mine[0].tokens] == pytest.approx(
                        [t.start_time for t in reference[0].tokens], abs=1e-6)


@needs_deepspeech
def test_streams_in_chunks_equal_mozillas_runtime(replays):
    runtime = Runtime("deepspeech")
    probs, _, path = replays["spelled"]
    audio = replay_audio(len(probs))
    ours = deepspeech.Model(str(path))
    ours.setBeamWidth(100)
    with runtime.model(path) as theirs:
        theirs.set_beam_width(100)
        for chunk in (160, 1234, 5000):
            mine, stream = ours.createStream(), theirs.create_stream()
            for start in range(0, len(audio), chunk):
                mine.feedAudioContent(audio[start:start + chunk])
                stream.feed(audio[start:start + chunk])
                assert mine.intermediateDecode() == stream.intermediate(), (chunk, start)
            assert mine.finishStream() == stream.finish() == "the quick brown fox jumps"


@pytest.fixture(scope="module")
def mozilla_scorer(tmp_path_factory):
    from test_mozilla_runtime import mozilla_scorer as build
    return build.__wrapped__(tmp_path_factory)


@needs_deepspeech
def test_scorer_decodes_equal_mozillas_runtime(replays, mozilla_scorer):
    runtime = Runtime("deepspeech")
    probs, pb, _ = replays["noisy"]
    audio = replay_audio(len(probs))
    ours = deepspeech.Model(str(pb))
    with runtime.model(pb) as theirs:
        ours.enableExternalScorer(str(mozilla_scorer))
        theirs.enable_scorer(mozilla_scorer)
        for beam, alpha, beta in ((16, 0.75, 1.5), (100, 2.0, 0.5)):
            ours.setBeamWidth(beam)
            theirs.set_beam_width(beam)
            ours.setScorerAlphaBeta(alpha, beta)
            theirs.set_alpha_beta(alpha, beta)
            stream = ours.createStream()
            for start in range(0, len(audio), 999):
                stream.feedAudioContent(audio[start:start + 999])
            assert ours.stt(audio) == theirs.stt(audio) == stream.finishStream(), (beam, alpha, beta)


# --- models that cannot be used: one line naming the file, Mozilla's error codes

def with_version(graph_def, version):
    from tensorflow.python.framework import tensor_util

    graph_def = type(graph_def).FromString(graph_def.SerializeToString())
    [node] = [n for n in graph_def.node if n.name == "metadata_version"]
    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(np.array([version], np.int32)))
    return graph_def


def test_bad_models_are_one_line_errors_naming_the_file(replays, tmp_path):
    probs, pb, pbmm_path = replays["short"]
    graph_def = build_replay_graph_def(probs, ALPHABET)
    old = tmp_path / "old.pb"
    old.write_bytes(with_version(graph_def, 5).SerializeToString())
    memmapped.write_memmapped(with_version(graph_def, 4), tmp_path / "old.pbmm")
    truncated = tmp_path / "truncated.pbmm"
    truncated.write_bytes(pbmm_path.read_bytes()[:-20])
    neither = tmp_path / "neither.pb"
    neither.write_bytes(mozilla_like_graph_def().SerializeToString())
    memmapped.write_memmapped(mozilla_like_graph_def(), tmp_path / "neither.pbmm")
    cases = [(old, 0x2003, "model version 5 is older than the oldest this client reads (6)"),
             (tmp_path / "old.pbmm", 0x2003, "model version 4 is older"),
             (truncated, 0x3000, "not a memory-mapped model"),
             (neither, 0x2003, "neither an export of this trainer nor a Mozilla DeepSpeech model"),
             (tmp_path / "neither.pbmm", 0x2003, "neither an export of this trainer nor a Mozilla")]
    for path, code, message in cases:
        with pytest.raises(DeepSpeechError) as error:
            deepspeech.Model(str(path))
        assert error.value.code == code and f"{path}: {message}" in str(error.value), str(error.value)
        assert "\n" not in str(error.value)


def test_cli_runs_a_mozilla_model_and_reports_a_bad_one_in_one_line(replays, tmp_path, capsys):
    import soundfile

    probs, _, pbmm_path = replays["spelled"]
    wav = tmp_path / "replay.wav"
    soundfile.write(wav, replay_audio(len(probs)), 16000, subtype="PCM_16")
    assert client.main(["--model", str(pbmm_path), "--audio", str(wav), "--beam_width", "16"]) == 0
    assert capsys.readouterr().out.strip() == "the quick brown fox jumps"
    assert client.main(["--model", str(pbmm_path), "--audio", str(wav), "--stream", "1600"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "the quick brown fox jumps"
    assert client.main(["--model", str(pbmm_path), "--audio", str(wav), "--json"]) == 0
    words = json.loads(capsys.readouterr().out)["transcripts"][0]["words"]
    assert [w["word"] for w in words] == "the quick brown fox jumps".split()
    assert words[1]["start_time"] == pytest.approx(0.02 * 2 * len("the "))
    broken = tmp_path / "broken.pbmm"
    broken.write_bytes(pbmm_path.read_bytes()[:1000])
    assert client.main(["--model", str(broken), "--audio", str(wav)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("deepspeech: error: CreateModel failed with") and str(broken) in err[-1]
    assert "Traceback" not in "".join(err)


def test_converter_tool_writes_tensorflows_format_for_a_mozilla_graph(replays, tmp_path):
    probs, pb, _ = replays["spelled"]
    out = tmp_path / "tool.pbmm"
    tool = str(ROOT / "bin" / "convert_graphdef_memmapped_format.py")
    done = subprocess.run([sys.executable, tool, "--in_graph", str(pb), "--out_graph", str(out),
                           "--min_conversion_tensor_size", "1000"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Converted 1 nodes" in done.stderr
    graph_def, regions = memmapped.read_memmapped(out)
    assert list(regions) == ["memmapped_package://replay_probs"]
    assert deepspeech.Model(str(out)).stt(replay_audio(len(probs))) == "the quick brown fox jumps"


# --- real acoustic graphs (Mozilla's exporter, training/deepspeech_training/mozilla): the same transcripts

def tone_clip(rng, segments):
    """Tones of random pitch and length with pauses, then 1000 zero samples (so that even Mozilla
    0.9.3's TFLite client, which keeps stale samples in its last window, computes the same last frame)."""
    pieces = []
    for _ in range(segments):
        t = np.arange(int(rng.integers(1200, 4800))) / 16000
        pieces += [0.4 * np.sin(2 * np.pi * rng.uniform(150, 5000) * t) * np.hanning(len(t)),
                   rng.normal(0, 0.003, int(rng.integers(800, 3200)))]
    audio = np.concatenate(pieces + [np.zeros(1000)])
    return np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Random Mozilla weights (n_hidden 32) exported as .pb, .pbmm and .tflite; synthetic clips."""
    graph = pytest.importorskip("deepspeech_training.mozilla.graph")
    try:
        from deepspeech_training.mozilla.tflite import tflite_model
    except ImportError:
        tflite_model = graph.tflite_model
    from deepspeech_training.mozilla import MozillaGeometry

    rng = np.random.default_rng(5)
    weights = {name: rng.normal(0, 1 / np.sqrt(shape[0]) if len(shape) == 2 else 0.1, shape).astype(np.float32)
               for name, shape in MozillaGeometry(n_hidden=32, num_classes=BLANK + 1).shapes().items()}
    weights["layer_1/weights"] *= 0.1  # MFCC 0 (log energy) is large
    weights["layer_6/weights"] *= 8  # confident outputs
    weights["layer_6/bias"][BLANK] += 3  # mostly blank, as a trained model
    tmp = tmp_path_factory.mktemp("mozilla_export")
    graph_def = graph.inference_graph_def(weights, ALPHABET.Serialize(), 100)
    (tmp / "model.pb").write_bytes(graph_def.SerializeToString())
    memmapped.write_memmapped(graph_def, tmp / "model.pbmm", min_bytes=1000)
    (tmp / "model.tflite").write_bytes(tflite_model(weights, ALPHABET.Serialize(), 100))
    (tmp / "model_quantized.tflite").write_bytes(tflite_model(weights, ALPHABET.Serialize(), 100, quantize=True))
    return tmp, [tone_clip(rng, n) for n in (3, 6, 10)]


ORACLES = [("model.pb", "deepspeech"), ("model.pbmm", "deepspeech"), ("model.tflite", "stt"),
           ("model.tflite", "deepspeech-tflite"), ("model_quantized.tflite", "stt"),
           ("model_quantized.tflite", "deepspeech-tflite")]


def oracle(name):
    if not library_path(name).is_file():
        pytest.skip(f"{library_path(name)} is missing (make install fetches it)")
    return Runtime(name)


@pytest.mark.parametrize("name, runtime", ORACLES)
def test_real_graphs_transcribe_as_mozillas_runtimes(exported, name, runtime):
    tmp, audios = exported
    path = str(tmp / name)
    ours = deepspeech.Model(path)
    assert ours._impl.metadata["n_steps"] == 16 and ours._impl.metadata["state_size"] == 32
    texts = []
    with oracle(runtime).model(path) as theirs:
        assert ours.beamWidth() == theirs.beam_width() == 100
        for i, audio in enumerate(audios):
            expected = theirs.stt_with_metadata(audio, 1)[0]
            got = ours.sttWithMetadata(audio, 1).transcripts[0]
            assert str(got) == expected.text, (i, name, runtime)
            assert [t.timestep for t in got.tokens] == [t.timestep for t in expected.tokens]
            assert got.confidence == pytest.approx(expected.confidence, rel=1e-3, abs=1e-2)
            stream = ours.createStream()
            for start in range(0, len(audio), 2345):
                stream.feedAudioContent(audio[start:start + 2345])
            assert stream.finishStream() == expected.text
            texts.append(expected.text)
    assert all(texts) and len(set(texts)) == len(texts)  # the model hears the clips


@pytest.mark.parametrize("name, runtime", ORACLES[:3])
def test_real_graphs_with_a_scorer_and_streams_as_mozillas_runtimes(exported, name, runtime, mozilla_scorer):
    tmp, audios = exported
    path = str(tmp / name)
    ours = deepspeech.Model(path)
    ours.enableExternalScorer(str(mozilla_scorer))
    with oracle(runtime).model(path) as theirs:
        theirs.enable_scorer(mozilla_scorer)
        for alpha, beta in ((0.75, 1.5), (2.0, 3.0)):
            ours.setScorerAlphaBeta(alpha, beta)
            theirs.set_alpha_beta(alpha, beta)
            for audio in audios:
                mine, stream = ours.createStream(), theirs.create_stream()
                for start in range(0, len(audio), 3200):
                    mine.feedAudioContent(audio[start:start + 3200])
                    stream.feed(audio[start:start + 3200])
                    assert mine.intermediateDecode() == stream.intermediate()
                assert mine.finishStream() == stream.finish() == ours.stt(audio) == theirs.stt(audio)


def test_tflite_tensors_are_found_by_name_among_extra_outputs(exported, tmp_path):
    """Coqui's exports add layer_3 and layer_5 activations as outputs: put them first, renamed."""
    from tensorflow.lite.tools import flatbuffer_utils

    tmp, audios = exported
    model = flatbuffer_utils.read_model(str(tmp / "model.tflite"))
    graph = model.subgraphs[0]
    extra = [i for i, t in enumerate(graph.tensors) if t.name.endswith((b"layer_3/Minimum", b"layer_5/Minimum"))]
    assert len(extra) == 2
    for i in extra:
        graph.tensors[i].name = graph.tensors[i].name.split(b"/")[0]
    graph.outputs = np.array(extra + list(graph.outputs), np.int32)
    flatbuffer_utils.write_model(model, str(tmp_path / "coqui.tflite"))
    coqui, plain = deepspeech.Model(str(tmp_path / "coqui.tflite")), deepspeech.Model(str(tmp / "model.tflite"))
    for audio in audios:
        assert coqui.stt(audio) == plain.stt(audio) and plain.stt(audio)
    if library_path("stt").is_file():
        with Runtime("stt").model(tmp_path / "coqui.tflite") as theirs:
            assert [theirs.stt(a) for a in audios] == [coqui.stt(a) for a in audios]


def test_a_tflite_model_of_neither_family_is_refused_in_one_line(tmp_path):
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [tf.function(lambda x: x * 2.0, input_signature=[tf.TensorSpec([1, 4], tf.float32)]).get_concrete_function()])
    path = tmp_path / "other.tflite"
    path.write_bytes(converter.convert())
    with pytest.raises(DeepSpeechError, match=rf"\(0x2003\): {path}: neither an export of this trainer nor a "
                                              rf"Mozilla DeepSpeech model: a TFLite model without"):
        deepspeech.Model(str(path))


def test_a_bytes_output_model_decodes_whole_characters(tmp_path):
    """metadata_alphabet of a bytes-output model (Mozilla's --bytes_output_mode) is a UTF8Alphabet."""
    from ds_ctcdecoder import UTF8Alphabet

    data = "añb".encode("utf-8")  # 4 bytes
    probs = np.full((2 * len(data), 256), 1e-4, np.float32)
    for i, byte in enumerate(data):
        probs[2 * i, byte - 1] = probs[2 * i + 1, 255] = 1.0
    probs /= probs.sum(1, keepdims=True)
    write_replay_pb(probs, UTF8Alphabet(), tmp_path / "bytes.pb")
    model = deepspeech.Model(str(tmp_path / "bytes.pb"))
    assert isinstance(model._impl.alphabet, UTF8Alphabet) and model._impl.utf8
    result = model.sttWithMetadata(replay_audio(len(probs)), 1).transcripts[0]
    assert str(result) == "añb" and [t.timestep for t in result.tokens] == [0, 2, 6]


def test_a_mozilla_tflite_model_runs_without_tensorflow(exported, tmp_path):
    tmp, audios = exported
    np.save(tmp_path / "a.npy", audios[0])
    code = (f"import sys, numpy as np, deepspeech\n"
            f"m = deepspeech.Model({str(tmp / 'model.tflite')!r})\n"
            f"print(m.stt(np.load({str(tmp_path / 'a.npy')!r})))\n"
            f"assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == deepspeech.Model(str(tmp / "model.tflite")).stt(audios[0])
