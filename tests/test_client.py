"""The ``deepspeech`` client package: features, Mozilla's Python API, streaming, scorer, CLI, errors.

Most tests run a stand-in for an export: ``ToneRuntime`` hears one sine tone per character (label i
at bin 8 + 4 i of the spectrogram) and silence as the CTC blank, so real audio files go through the
real features, decoder and command line with a known transcript.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from conftest import ROOT

import deepspeech
from deepspeech import client
from deepspeech.audio import from_int16, to_int16
from deepspeech.errors import DeepSpeechError
from deepspeech.features import Framing, FrameStream, spectrogram

LABELS = list(" abcdefghijklmnopqrstuvwxyz'")
RATE = 16000
CHAR_MS, GAP_MS = 80, 40
BIN_HZ = RATE / 320  # spectrogram bin width at 20 ms windows


def tone_audio(text, mix=None, rate=RATE, amplitude=0.3):
    """One 80 ms tone per character, 40 ms of silence after each; ``mix`` = {position: (char, share)}
    adds a second tone there, so the model hears both."""
    n, gap = rate * CHAR_MS // 1000, rate * GAP_MS // 1000
    t = np.arange(n) / rate
    pieces = []
    for i, ch in enumerate(text):
        tone = amplitude * np.sin(2 * np.pi * (8 + 4 * LABELS.index(ch)) * BIN_HZ * t)
        if mix and i in mix:
            other, share = mix[i]
            tone = (1 - share) * tone + share * amplitude * np.sin(
                2 * np.pi * (8 + 4 * LABELS.index(other)) * BIN_HZ * t)
        pieces += [tone, np.zeros(gap)]
    return to_int16(np.concatenate(pieces) if pieces else np.zeros(0))


class ToneRuntime:
    """A stand-in export ('forward'): log amplitude of each label's tone bin vs a blank logit of 0."""

    function_name = "forward"

    def __init__(self, stride=1, **metadata):
        self.stride = stride
        self.metadata = {
            "format": "deepspeech2-export", "format_version": 1, "version": "0.1.0", "function": "forward",
            "sample_rate": RATE, "features": {"sample_rate": RATE, "win_len_ms": 20, "win_step_ms": 10},
            "model": {"num_classes": len(LABELS) + 1,
                      "conv": [{"filters": 8, "kernel": [3, 1], "stride": [stride, 1]}]},
            "alphabet": LABELS, "utf8": False, "beam_width": 100, **metadata}
        self.calls = 0

    def forward(self, features, lengths):
        self.calls += 1
        frames = features[0, :lengths[0]]
        bins = 8 + 4 * np.arange(len(LABELS))
        logits = np.concatenate([0.5 * frames[:, bins], np.zeros((len(frames), 1))], axis=1)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        return probs[None, ::self.stride].astype(np.float32)


class ToneStepRuntime(ToneRuntime):
    """The same stand-in as a unidirectional export ('step', run by the streaming driver): each step
    hears ``n_steps`` frames; its state counts the steps run."""

    function_name = "step"

    def __init__(self, n_steps=4, **metadata):
        streaming = {"n_steps": n_steps, "window_frames": n_steps, "time_stride": 1, "window_offset": 0,
                     "lookahead": 0, "state_size": 1, "num_classes": len(LABELS) + 1, "n_features": 161}
        super().__init__(function="step", streaming=streaming, **metadata)
        self.positions = []

    def step(self, features, position, valid_frames, state):
        self.positions.append(int(position[0]))
        assert state[0, 0] == len(self.positions) - 1 and features.shape == (1, len(features[0]), 161)
        return {"probs": self.forward(features, [features.shape[1]]), "new_state": state + 1}


@pytest.fixture
def fake_model(monkeypatch):
    """``make(**kw)`` -> a Model whose export is a ToneRuntime(**kw) (``step=True``: ToneStepRuntime)."""
    runtimes = {}

    def open_runtime(path):
        if path not in runtimes:
            raise DeepSpeechError("CreateModel", 0x3000, f"{path}: no such file or directory")
        return runtimes[path]

    def make(path="tone.tflite", step=False, **kw):
        runtimes[path] = (ToneStepRuntime if step else ToneRuntime)(**kw)
        return path

    monkeypatch.setattr(deepspeech, "open_runtime", open_runtime)
    return make


@pytest.fixture(scope="module")
def scorer_path(tmp_path_factory):
    from test_ctcdecode import KENLM_BINS, build_lm, package

    if not (KENLM_BINS / "lmplz").exists():
        pytest.skip("needs KenLM tools (make install)")
    tmp = tmp_path_factory.mktemp("client_lm")
    return str(package(tmp, build_lm(tmp, ["the cat sat on the mat", "the dog sat on the log",
                                           "a cat and a rat", "the rat ate"] * 5)))


# --- features and audio

def test_numpy_spectrogram_equals_the_trainers_tensorflow_one():
    import tensorflow as tf

    from deepspeech_training.features import FeatureConfig
    from deepspeech_training.features import spectrogram as tf_spectrogram

    rng = np.random.default_rng(1)
    speechy = from_int16(tone_audio("the cat")) + 0.01 * rng.standard_normal(len(tone_audio("the cat")))
    for audio in [speechy, 0.1 * rng.standard_normal(7777), np.zeros(100), np.zeros(0), speechy[:320]]:
        audio = audio.astype(np.float32)
        expected = tf_spectrogram(tf.constant(audio), FeatureConfig()).numpy()
        got = spectrogram(audio, Framing())
        assert got.shape == expected.shape and got.dtype == np.float32
        # bins within 40 dB of their frame's peak agree to 1e-4; far weaker bins differ only by float32
        # rounding of the FFT, which the logarithm magnifies
        strong = expected > expected.max(1, keepdims=True) - np.log(1e4)
        assert np.abs(got - expected)[strong].max() < 1e-4
        assert np.abs(got - expected).mean() < 1e-5


def test_frames_of_a_stream_fed_in_chunks_are_the_whole_clips():
    rng = np.random.default_rng(2)
    audio = rng.uniform(-0.5, 0.5, 5000).astype(np.float32)
    whole = spectrogram(audio, Framing())
    for sizes in ([1] * 700 + [4300], [159, 161, 320, 4360], [5000], [0, 2500, 0, 2500]):
        stream, parts, offset = FrameStream(Framing()), [], 0
        for size in sizes:
            parts.append(stream.feed(audio[offset:offset + size]))
            offset += size
        parts.append(stream.finish())
        np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)
    short = FrameStream(Framing())  # shorter than one window: one zero-padded frame, as one-shot
    assert len(short.feed(audio[:100])) == 0
    np.testing.assert_allclose(short.finish(), spectrogram(audio[:100], Framing()), atol=1e-6)


def test_one_audio_implementation_for_trainer_and_client():
    import deepspeech.audio as client_audio
    from deepspeech_training import features

    for name in ("AudioError", "load_audio", "audio_info", "resample"):
        assert getattr(features, name) is getattr(client_audio, name)
    samples = np.array([-32768, -1, 0, 1, 32767], np.int16)
    np.testing.assert_array_equal(to_int16(from_int16(samples)), samples)


def test_client_never_imports_tensorflow(tmp_path):
    code = ("import sys, deepspeech, deepspeech.client, deepspeech.features, deepspeech.audio\n"
            "assert 'tensorflow' not in sys.modules and 'deepspeech_training' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


# --- Mozilla's Model API

def test_stt_and_metadata_times_tokens_by_output_frame(fake_model):
    model = deepspeech.Model(fake_model(stride=2))
    assert model.sampleRate() == 16000 and model.beamWidth() == 100
    assert model.setBeamWidth(16) == 0 and model.beamWidth() == 16
    audio = tone_audio("the cat")
    assert model.stt(audio) == "the cat"
    metadata = model.sttWithMetadata(audio, 3)
    best = metadata.transcripts[0]
    assert "".join(t.text for t in best.tokens) == "the cat" and best.confidence < 0
    assert len(metadata.transcripts) == 3 and len({str(t) for t in metadata.transcripts}) == 3
    # character k starts at k * 120 ms; one output frame = 10 ms step x stride 2 = 20 ms
    for k, token in enumerate(best.tokens):
        assert token.start_time == pytest.approx(token.timestep * 0.02)
        assert abs(token.start_time - k * 0.120) <= 0.02, (k, token)


def test_audio_buffer_must_be_16_bit_samples(fake_model):
    model = deepspeech.Model(fake_model())
    assert model.stt(np.zeros(0, np.int16)) == ""
    assert model.stt(tone_audio("a").astype(np.int32)) == "a"  # integers that fit are accepted
    with pytest.raises(TypeError, match="int16"):
        model.stt(from_int16(tone_audio("a")))
    with pytest.raises(ValueError, match="mono"):
        model.stt(np.zeros((1000, 2), np.int16))


def test_stream_gives_intermediate_results_and_the_one_shot_transcript(fake_model):
    model = deepspeech.Model(fake_model())
    audio = tone_audio("a cat sat")
    stream = model.createStream()
    partials = []
    for offset in range(0, len(audio), 960):
        stream.feedAudioContent(audio[offset:offset + 960])
        partials.append(stream.intermediateDecode())
    assert partials[0] == "a" and "a cat" in partials and partials[-1] == "a cat sat"
    metadata = stream.finishStreamWithMetadata(2)
    one_shot = model.sttWithMetadata(audio, 2)
    assert [str(t) for t in metadata.transcripts] == [str(t) for t in one_shot.transcripts]
    assert metadata.transcripts[0].tokens == one_shot.transcripts[0].tokens
    with pytest.raises(RuntimeError, match="already finished stream"):
        stream.feedAudioContent(audio)
    other = model.createStream()
    other.freeStream()
    with pytest.raises(RuntimeError, match="Trying to finish an already finished stream"):
        other.finishStream()
    empty = model.createStream()
    assert empty.intermediateDecode() == "" and empty.finishStream() == ""


def test_unidirectional_stream_runs_as_audio_arrives(fake_model):
    model = deepspeech.Model(fake_model(step=True, n_steps=4))
    runtime = deepspeech.open_runtime("tone.tflite")
    audio = tone_audio("a cat sat")
    assert model.stt(audio) == "a cat sat"
    one_shot_steps, runtime.positions = len(runtime.positions), []
    stream, partials = model.createStream(), []
    for offset in range(0, len(audio), 480):  # 30 ms chunks
        stream.feedAudioContent(audio[offset:offset + 480])
        partials.append((len(runtime.positions), stream.intermediateDecode()))
    assert partials[0] == (0, "")  # 30 ms of audio: 2 frames, not yet a step of 4
    assert partials[8][0] >= 4 and partials[8][1] == "a c"  # steps ran as audio arrived (270 ms in)
    assert stream.finishStream() == "a cat sat" and len(runtime.positions) == one_shot_steps
    assert runtime.positions == list(range(0, 4 * one_shot_steps, 4))


def test_unidirectional_stream_decodes_each_frame_once(fake_model, scorer_path, monkeypatch):
    """The stream's beam search goes on with the new frames only (Mozilla's decoder state), and its
    final result is the one-shot one, with a scorer too."""
    from ds_ctcdecoder import DecoderState

    fed = []
    original = DecoderState.next
    monkeypatch.setattr(DecoderState, "next", lambda self, probs: (fed.append(len(probs)), original(self, probs)))
    model = deepspeech.Model(fake_model(step=True, n_steps=4))
    model.enableExternalScorer(scorer_path)
    audio = tone_audio("the kat sat")
    one_shot = model.sttWithMetadata(audio, 2)
    total, fed[:] = sum(fed), []
    deepspeech.open_runtime("tone.tflite").positions = []  # the fake step model counts its windows anew
    stream, partials = model.createStream(), []
    for offset in range(0, len(audio), 480):
        stream.feedAudioContent(audio[offset:offset + 480])
        partials.append(stream.intermediateDecode())
    final = stream.finishStreamWithMetadata(2)
    assert sum(fed) == total and len(fed) > 10  # every output frame searched once, in many pieces
    assert "the cat" in partials and str(final.transcripts[0]) == "the cat sat"
    assert [str(t) for t in final.transcripts] == [str(t) for t in one_shot.transcripts]
    assert [t.confidence for t in final.transcripts] == [t.confidence for t in one_shot.transcripts]


def test_bidirectional_stream_runs_the_model_only_when_asked(fake_model):
    model = deepspeech.Model(fake_model())
    runtime = deepspeech.open_runtime("tone.tflite")
    stream = model.createStream()
    for chunk in np.array_split(tone_audio("cat"), 10):
        stream.feedAudioContent(chunk)
    assert runtime.calls == 0
    assert stream.intermediateDecode() == "cat" and stream.intermediateDecode() == "cat"
    assert runtime.calls == 1  # nothing new arrived: not run again
    assert stream.finishStream() == "cat"


def test_scorer_alpha_beta_and_hot_words(fake_model, scorer_path):
    model = deepspeech.Model(fake_model())
    heard = tone_audio("the kat sat")  # 'kat' is not a word of the scorer
    assert model.stt(heard) == "the kat sat"
    assert model.setScorerAlphaBeta(1.0, 2.0) == 0x2004  # no scorer yet
    with pytest.raises(RuntimeError, match=r"AddHotWord failed with 'External scorer is not enabled.' \(0x2004\)"):
        model.addHotWord("rat", 5.0)
    model.enableExternalScorer(scorer_path)
    assert model.stt(heard) == "the cat sat"
    assert model.setScorerAlphaBeta(0.75, 0.0) == 0
    # 'cat' louder than 'rat' in the same frames: the boost of the hot word decides
    # (a hot word counts in the n-grams scored at a space after a word, as Mozilla's: not as the last word)
    ambiguous = tone_audio("the cat sat", mix={4: ("r", 0.45)})
    assert model.stt(ambiguous) == "the cat sat"
    model.addHotWord("rat", 8.0)
    assert model.stt(ambiguous) == "the rat sat "  # boosted "rat sat" + a space: kept, as Mozilla keeps it
    with pytest.raises(RuntimeError, match="0x3008"):
        model.addHotWord("rat", 1.0)  # already there (Mozilla's insert does not overwrite)
    model.eraseHotWord("rat")
    assert model.stt(ambiguous) == "the cat sat"
    with pytest.raises(RuntimeError, match="0x3010"):
        model.eraseHotWord("rat")
    model.addHotWord("rat", 8.0)
    model.clearHotWords()
    assert model.stt(ambiguous) == "the cat sat"
    stream = model.createStream()  # a stream keeps the settings it was created with
    model.disableExternalScorer()
    assert model.stt(heard) == "the kat sat"
    stream.feedAudioContent(heard)
    assert stream.finishStream() == "the cat sat"


def test_scorer_errors_name_the_problem(fake_model, scorer_path, tmp_path):
    model = deepspeech.Model(fake_model(alphabet=LABELS[:-1] + ["-"]))
    with pytest.raises(RuntimeError, match=r"EnableExternalScorer failed with 'Invalid scorer file.' "
                                           r"\(0x2002\).*another alphabet"):
        model.enableExternalScorer(scorer_path)
    with pytest.raises(RuntimeError, match=r"\(0x2005\).*not found"):
        model.enableExternalScorer(str(tmp_path / "missing.scorer"))
    (tmp_path / "junk.scorer").write_bytes(b"not a language model")
    with pytest.raises(RuntimeError, match=r"\(0x2006\)"):
        model.enableExternalScorer(str(tmp_path / "junk.scorer"))


@pytest.mark.parametrize("change, code, message", [
    ({"format_version": 2}, 0x2003, "format version is 2"),
    ({"format": "something-else"}, 0x2003, "not a deepspeech2-export model"),
    ({"min_ds_version": "99.0.0"}, 0x2003, "needs client version 99.0.0"),
    ({"alphabet": LABELS[:10]}, 0x2000, "10 labels but the model outputs 29"),
    ({"sample_rate": 8000}, 0x2001, "sample rate 8000"),
    ({"function": "step"}, 0x2001, "without its 'streaming' metadata"),
])
def test_incompatible_models_are_refused(fake_model, change, code, message):
    with pytest.raises(DeepSpeechError, match=message) as err:
        deepspeech.Model(fake_model(**change))
    assert err.value.code == code and str(err.value).startswith("CreateModel failed with '")
    assert isinstance(err.value, RuntimeError)


def test_placeholder_model_card_versions_are_no_constraint(fake_model):
    path = fake_model(min_ds_version="<help text>", max_ds_version="0.0.1")
    assert deepspeech.Model(path).stt(tone_audio("ab")) == "ab"
    assert deepspeech.version() == (ROOT / "VERSION").read_text().strip()


def test_a_script_written_for_mozillas_package_runs_unchanged(fake_model, tmp_path, scorer_path):
    """The calls of Mozilla's examples (client.py, mic_vad_streaming.py), with the ``wave`` module."""
    import wave

    from deepspeech import Model, version

    path = write_wav(tmp_path / "a.wav", tone_audio("the kat sat"), subtype="PCM_16")
    ds = Model(fake_model())
    ds.setBeamWidth(500)
    ds.enableExternalScorer(scorer_path)
    ds.setScorerAlphaBeta(0.931289039105002, 1.1834137581510284)
    with wave.open(path, "rb") as fin:
        assert fin.getframerate() == ds.sampleRate()
        frames = fin.readframes(fin.getnframes())
    audio = np.frombuffer(frames, np.int16)
    assert ds.stt(audio) == "the cat sat" and isinstance(version(), str)
    transcript = ds.sttWithMetadata(audio, 1).transcripts[0]
    assert "".join(token.text for token in transcript.tokens) == "the cat sat"
    assert [round(token.start_time, 2) for token in transcript.tokens][:2] == [0.0, 0.11]
    stream = ds.createStream()
    for offset in range(0, len(frames), 640):  # 20 ms of 16-bit bytes at a time
        stream.feedAudioContent(np.frombuffer(frames[offset:offset + 640], np.int16))
    assert stream.intermediateDecode() == "the cat sat" and stream.finishStream() == "the cat sat"


def test_bytes_output_tokens_are_whole_characters():
    from ds_ctcdecoder import DecodeResult, UTF8Alphabet

    from deepspeech.metadata import candidate_from_result

    ids = [b - 1 for b in "a数".encode()]  # 'a' then the three bytes of 数, at frames 0, 4, 5, 6
    result = DecodeResult(-1.5, "a数", ids, [0, 4, 5, 6])
    transcript = candidate_from_result(result, UTF8Alphabet(), 0.03, utf8=True)
    assert [(t.text, t.timestep) for t in transcript.tokens] == [("a", 0), ("数", 4)]
    assert transcript.tokens[1].start_time == pytest.approx(0.12) and transcript.confidence == -1.5


# --- the command line

def write_wav(path, samples, rate=RATE, **kw):
    soundfile.write(str(path), samples, rate, **kw)
    return str(path)


def run_cli(capsys, *args):
    code = client.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_the_transcript_json_and_extended(fake_model, tmp_path, capsys):
    model, wav = fake_model(stride=2), write_wav(tmp_path / "a.wav", tone_audio("a cat"))
    code, out, err = run_cli(capsys, "--model", model, "--audio", wav)
    assert code == 0 and out == "a cat\n"
    assert "Loading model from file tone.tflite" in err and "Inference took" in err
    code, out, _ = run_cli(capsys, "--model", model, "--audio", wav, "--extended")
    assert code == 0 and out == "a cat\n"
    code, out, _ = run_cli(capsys, "--model", model, "--audio", wav, "--json", "--candidate_transcripts", "2")
    result = json.loads(out)
    assert len(result["transcripts"]) == 2
    best = result["transcripts"][0]
    assert [w["word"] for w in best["words"]] == ["a", "cat"] and isinstance(best["confidence"], float)
    # 'a' starts at 0 and ends at the space (120 ms later); 'cat' starts at 240 ms
    assert best["words"][0]["start_time"] == pytest.approx(0.0, abs=0.02)
    assert best["words"][0]["duration"] == pytest.approx(0.12, abs=0.02)
    assert best["words"][1]["start_time"] == pytest.approx(0.24, abs=0.02)


def test_cli_streams_intermediate_transcripts(fake_model, tmp_path, capsys):
    wav = write_wav(tmp_path / "a.wav", tone_audio("a cat"))
    code, out, _ = run_cli(capsys, "--model", fake_model(), "--audio", wav, "--stream", "1600")
    lines = out.splitlines()
    assert code == 0 and lines[-1] == "a cat" and len(lines) >= 3
    assert len(set(lines[:-1])) == len(lines) - 1  # an intermediate result is printed when it changes
    assert all("a cat".startswith(line) for line in lines)
    with pytest.raises(SystemExit) as exit_:
        client.main(["--model", "m", "--audio", wav, "--stream", "1000"])
    assert exit_.value.code == 2 and "multiples of 160" in capsys.readouterr().err
    for flag in ("--beam_width", "--candidate_transcripts"):
        with pytest.raises(SystemExit):
            client.main(["--model", "m", "--audio", wav, flag, "0"])
        assert "must be at least 1" in capsys.readouterr().err


def test_cli_resamples_other_rates_and_formats_with_a_warning(fake_model, tmp_path, capsys, caplog):
    high = np.repeat(tone_audio("a cat"), 3)  # 48 kHz, each sample thrice: the same tones
    wav = write_wav(tmp_path / "a.flac", high, rate=48000, format="FLAC")
    code, out, err = run_cli(capsys, "--model", fake_model(), "--audio", wav)
    assert code == 0 and out == "a cat\n"
    assert "original sample rate (48000) is different than 16000hz" in caplog.text


def test_cli_hot_words_and_scorer(fake_model, tmp_path, capsys, scorer_path):
    wav = write_wav(tmp_path / "a.wav", tone_audio("the cat sat", mix={4: ("r", 0.45)}))
    model = fake_model()
    code, out, _ = run_cli(capsys, "--model", model, "--audio", wav, "--scorer", scorer_path, "--lm_beta", "0")
    assert code == 0 and out == "the cat sat\n"
    code, out, _ = run_cli(capsys, "--model", model, "--audio", wav, "--scorer", scorer_path,
                           "--lm_beta", "0", "--hot_words", "rat:8.0")
    assert code == 0 and out == "the rat sat \n"
    # a hot word the scorer cannot spell is accepted, as by Mozilla, and changes nothing
    code, out, err = run_cli(capsys, "--model", model, "--audio", wav, "--scorer", scorer_path,
                             "--lm_beta", "0", "--hot_words", "zebra:5.0,rat:8.0")
    assert code == 0 and out == "the rat sat \n" and "Traceback" not in err
    deepspeech_model = deepspeech.Model(model)
    deepspeech_model.enableExternalScorer(scorer_path)
    deepspeech_model.addHotWord("zebra", 5.0)
    assert deepspeech_model.stt(tone_audio("the cat")) == "the cat"
    code, _, err = run_cli(capsys, "--model", model, "--audio", wav, "--hot_words", "rat:8.0")
    assert code == 1 and "External scorer is not enabled" in err
    code, _, err = run_cli(capsys, "--model", model, "--audio", wav, "--scorer", scorer_path,
                           "--hot_words", "rat")
    assert code == 1 and "not word:boost" in err


@pytest.mark.parametrize("content, expected", [
    (b"", "cannot read audio"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt garbage", "cannot read audio"),
    (None, "no audio samples"),
])
def test_cli_bad_audio_is_one_line_and_status_1(fake_model, tmp_path, capsys, content, expected):
    path = tmp_path / "bad.wav"
    if content is None:
        write_wav(path, np.zeros(0, np.int16))
    else:
        path.write_bytes(content)
    code, out, err = run_cli(capsys, "--model", fake_model(), "--audio", path)
    assert code == 1 and out == "" and expected in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("deepspeech: error: ")


def test_cli_command_reports_a_missing_model_without_traceback(tmp_path):
    wav = write_wav(tmp_path / "a.wav", tone_audio("a"))
    command = os.path.join(os.path.dirname(sys.executable), "deepspeech")
    proc = subprocess.run([command, "--model", str(tmp_path / "nope.tflite"), "--audio", wav],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "CreateModel failed with 'Failed to initialize memory mapped model.' (0x3000)" in proc.stderr
    version = subprocess.run([command, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"DeepSpeech {deepspeech.version()}"


# --- transcribe.py and evaluate_tflite.py (Mozilla's top-level scripts)

def load_tool(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_transcribe_splits_at_pauses_and_times_words(fake_model, tmp_path, capsys):
    from deepspeech_training import transcribe

    second = np.zeros(RATE, np.int16)
    audio = np.concatenate([second, tone_audio("the cat"), second, tone_audio("a dog sat"), second])
    wav = write_wav(tmp_path / "talk.wav", audio)
    assert transcribe.main(["--model", fake_model(), "--src", wav]) == 0
    segments = json.loads((tmp_path / "talk.tlog").read_text())
    assert [s["transcript"] for s in segments] == ["the cat", "a dog sat"]
    (a, b), (c, d) = [(s["start"], s["end"]) for s in segments]
    assert 700 <= a <= 1000 and 1840 <= b <= 2300 and 2500 <= c <= 2840 and 3920 <= d <= 4500
    words = segments[1]["words"]  # times from the start of the file
    assert [w["word"] for w in words] == ["a", "dog", "sat"]
    assert words[1]["start_time"] == pytest.approx(2.84 + 0.24, abs=0.03)
    assert transcribe.main(["--model", fake_model(), "--src", wav]) == 1  # the .tlog exists
    assert "already existing - use --force" in capsys.readouterr().err
    sub = tmp_path / "more" / "deeper"
    sub.mkdir(parents=True)
    write_wav(sub / "b.flac", np.concatenate([second, tone_audio("dog")]), format="FLAC")
    assert transcribe.main(["--model", fake_model(), "--src", str(tmp_path), "--recursive", "--force"]) == 0
    assert json.loads((sub / "b.tlog").read_text())[0]["transcript"] == "dog"
    assert transcribe.main(["--model", fake_model(), "--src", wav, "--vad_aggressiveness", "7"]) == 1
    assert "transcribe: error: flag --vad_aggressiveness" in capsys.readouterr().err


def test_evaluate_tflite_reports_wer_in_parallel(fake_model, tmp_path, capsys):
    evaluate = load_tool("evaluate_tflite")
    rows = [("a.wav", "the cat", "the cat"), ("b.wav", "a dog", "a dog"), ("c.wav", "the cat sat", "the rat sat")]
    lines = ["wav_filename,wav_filesize,transcript"]
    for name, spoken, truth in rows:
        write_wav(tmp_path / name, tone_audio(spoken))
        lines.append(f"{name},0,{truth}")
    (tmp_path / "test.csv").write_text("\n".join(lines) + "\n")
    code = evaluate.main(["--model", fake_model(), "--csv", str(tmp_path / "test.csv"), "--proc", "2",
                          "--dump", str(tmp_path / "dump"), "--report_count", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "Totally 3 wav entries found in csv" in out
    assert "WER: 0.142857, CER: 0.043478, loss: 0.000000" in out  # 1 of 7 words, 1 of 23 characters
    assert f"{tmp_path / 'c.wav'} the cat sat" in (tmp_path / "dump.out").read_text().splitlines()
    assert f"{tmp_path / 'c.wav'} the rat sat" in (tmp_path / "dump.txt").read_text().splitlines()
    code = evaluate.main(["--model", fake_model(), "--csv", str(tmp_path / "missing.csv")])
    assert code == 1 and "CSV file not found" in capsys.readouterr().err

