"""Mozilla DeepSpeech 0.9.3's own runtime (libdeepspeech.so, TensorFlow build) as an oracle.

A replay graph (util/replay_graph.py) feeds a known probability matrix through Mozilla's runtime;
its decoder must read the text we put in, at the frames we put it, and agree with ours.
"""
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "util"))

from ds_ctcdecoder import Alphabet, Scorer, ctc_beam_search_decoder  # noqa: E402
from mozilla_runtime import (Runtime, RuntimeCallError, RuntimeLibraryError, library_path)  # noqa: E402
from replay_graph import replay_audio, write_replay_pb  # noqa: E402

if not library_path("deepspeech").is_file():
    pytest.skip(f"Mozilla's runtime {library_path('deepspeech')} is missing (make install fetches it)",
                allow_module_level=True)

ALPHABET = Alphabet.from_labels(list(" abcdefghijklmnopqrstuvwxyz'"))
BLANK = len(ALPHABET)


def matrix(frames):
    """[T, C] probabilities from frames, each {label or 'blank': probability}; the rest spread evenly."""
    probs = np.zeros((len(frames), BLANK + 1), np.float32)
    for t, frame in enumerate(frames):
        ids = {BLANK if k == "blank" else ALPHABET.EncodeSingle(k): v for k, v in frame.items()}
        rest = (1.0 - sum(ids.values())) / (BLANK + 1 - len(ids))
        probs[t] = rest
        for i, v in ids.items():
            probs[t, i] = v
    return probs


def spelled(text, peak=0.9):
    """Each character at its own frame (then a blank frame): [T, C] and the character frames."""
    frames, at = [], []
    for ch in text:
        at.append(len(frames))
        frames += [{ch: peak}, {"blank": peak}]
    return matrix(frames), at


def greedy(probs):
    best = probs.argmax(1)
    return "".join(ALPHABET.DecodeSingle(int(c)) for i, c in enumerate(best)
                   if c != BLANK and (i == 0 or c != best[i - 1]))


# "a" is never the best class of a frame, but "a" over three frames outweighs blank: best path ""
# (greedy) against best labelling "a" (prefix beam search); unequal splits, so no two candidates tie
TRICKY = matrix([f for a in (0.33, 0.35, 0.37)
                 for f in ({"b": 0.9}, {"blank": 0.9}, *[{"a": a, "blank": 0.45}] * 3, {"c": 0.9}, {"blank": 0.9})])


@pytest.fixture(scope="module")
def runtime():
    return Runtime("deepspeech")


@pytest.fixture(scope="module")
def replay(runtime, tmp_path_factory):
    """probs -> a Mozilla Model replaying them (one graph per matrix, cached)."""
    tmp, models = tmp_path_factory.mktemp("replay"), {}

    def load(probs):
        key = probs.tobytes()
        if key not in models:
            path = tmp / f"replay{len(models)}.pb"
            write_replay_pb(probs, ALPHABET, path)
            models[key] = runtime.model(path)
        return models[key]
    yield load
    for model in models.values():
        model.close()


def test_beam_width_1_is_the_greedy_decode_and_wide_beams_match_ours(replay):
    model = replay(TRICKY)
    audio = replay_audio(len(TRICKY))
    model.set_beam_width(1)
    assert model.stt(audio) == greedy(TRICKY) == "bcbcbc"
    model.set_beam_width(100)
    [(ours_confidence, ours)] = ctc_beam_search_decoder(TRICKY, ALPHABET, 100)
    assert model.stt(audio) == ours == "bacbacbac"
    [best] = model.stt_with_metadata(audio, 1)
    # both approximate the CTC log-probability of the text (-4.2145 by the forward algorithm) the same way
    assert best.text == ours and best.confidence == pytest.approx(ours_confidence, abs=1e-4)


def test_candidates_and_their_order_match_ours(replay):
    model = replay(TRICKY)
    model.set_beam_width(100)
    theirs = model.stt_with_metadata(replay_audio(len(TRICKY)), 3)
    ours = ctc_beam_search_decoder(TRICKY, ALPHABET, 100, num_results=3)
    assert [c.text for c in theirs] == [text for _, text in ours]
    assert np.allclose([c.confidence for c in theirs], [conf for conf, _ in ours], atol=1e-4)
    assert theirs[0].confidence > theirs[1].confidence > theirs[2].confidence


def test_token_timesteps_are_the_frames_of_the_matrix(replay):
    probs, at = spelled("hello world")  # 22 frames: a final partial batch of 6
    model = replay(probs)
    model.set_beam_width(16)
    [best] = model.stt_with_metadata(replay_audio(len(probs)), 1)
    assert best.text == "hello world"
    assert [t.text for t in best.tokens] == list("hello world")
    assert [t.timestep for t in best.tokens] == at
    assert [t.start_time for t in best.tokens] == pytest.approx([0.02 * t for t in at])


def test_audio_gives_exactly_the_frames_of_the_matrix(replay):
    probs = matrix([{ch: 0.9} for ch in "abcdefghijklmnopqrstuvwxyz" * 2][:40])  # a new label each frame
    model = replay(probs)
    model.set_beam_width(1)
    for frames in (1, 2, 15, 16, 17, 32, 33, 40):
        assert model.stt(replay_audio(frames)) == greedy(probs[:frames])


def test_streaming_in_chunks_gives_the_same_text(replay):
    probs, _ = spelled("the quick brown fox jumps")  # 50 frames
    model = replay(probs)
    model.set_beam_width(100)
    audio = replay_audio(len(probs))
    with model.create_stream() as stream:
        # 1 + (5000-512)//320 = 15 MFCC frames: 6 timesteps have their 9 future frames, no batch of 16 yet
        stream.feed(audio[:5000])
        assert stream.intermediate() == ""
        stream.feed(audio[5000:11000])  # 33 MFCC frames, 24 timesteps: one batch of 16 (8 characters) decoded
        assert stream.intermediate() == "the quic"
        for start in range(11000, len(audio), 1234):
            stream.feed(audio[start:start + 1234])
        assert stream.finish() == model.stt(audio) == "the quick brown fox jumps"


def test_error_codes_become_exceptions_with_mozillas_message(runtime, replay, tmp_path):
    with pytest.raises(RuntimeCallError, match=r"DS_AddHotWord failed with error 0x2004 "
                                               r"\(DS_ERR_SCORER_NOT_ENABLED\): External scorer is not enabled"):
        replay(TRICKY).add_hot_word("cab", 5.0)
    (tmp_path / "junk.pb").write_bytes(b"not a graph")
    with pytest.raises(RuntimeCallError) as error:
        runtime.model(tmp_path / "junk.pb")
    assert error.value.code == 0x3005 and error.value.message == "Error reading the proto buffer model file."
    with pytest.raises(RuntimeCallError, match="0x2002.*Invalid scorer file"):
        replay(TRICKY).enable_scorer(tmp_path / "junk.pb")
    with pytest.raises(RuntimeLibraryError, match=r"nowhere/libdeepspeech.so: no such library \(make install"):
        Runtime(str(tmp_path / "nowhere" / "libdeepspeech.so"))


@pytest.fixture(scope="module")
def mozilla_scorer(tmp_path_factory):
    """A Mozilla-layout scorer (KenLM binary, 'TRIE' header, OpenFST vocabulary) of a tiny word LM.

    As Mozilla's generate_scorer_package writes it, each word of the FST ends with the space label:
    without it Mozilla's decoder never emits a space.
    """
    from test_ctcdecode import KENLM_BINS, TEXT, build_lm, write_const_fst
    if not (KENLM_BINS / "lmplz").exists():
        pytest.skip("needs KenLM tools (make install)")
    tmp = tmp_path_factory.mktemp("mozilla_lm")
    lm_dir = build_lm(tmp, TEXT)
    path = tmp / "mozilla.scorer"
    with open(path, "wb") as f:
        f.write((lm_dir / "lm.binary").read_bytes() + struct.pack("<i", 0x54524945)
                + struct.pack("<i?dd", 6, False, 0.75, 1.5))
        vocab = (lm_dir / "vocab-500.txt").read_text().split()
        write_const_fst(f, [[i + 1 for i in ALPHABET.Encode(w + " ")] for w in vocab])
    return path


def test_scorer_decodes_agree_with_ours(replay, mozilla_scorer):
    probs, _ = spelled("the kat sat on the mat")
    model = replay(probs)
    model.set_beam_width(64)
    audio = replay_audio(len(probs))
    assert model.stt(audio) == "the kat sat on the mat"  # no scorer yet
    model.enable_scorer(mozilla_scorer)
    try:
        for alpha, beta in ((0.75, 1.5), (2.0, 0.5)):
            model.set_alpha_beta(alpha, beta)
            [(_, ours)] = ctc_beam_search_decoder(probs, ALPHABET, 64, cutoff_top_n=40,
                                                  scorer=Scorer(alpha, beta, str(mozilla_scorer), ALPHABET))
            assert model.stt(audio) == ours == "the cat sat on the mat"
        [best] = model.stt_with_metadata(audio, 1)
        assert [t.timestep for t in best.tokens] == [2 * i for i in range(len("the cat sat on the mat"))]
    finally:
        model.disable_scorer()


@pytest.fixture(scope="module")
def our_scorer(tmp_path_factory):
    """A scorer written by our generate_scorer_package (Mozilla's layout + our trailer)."""
    from test_ctcdecode import KENLM_BINS, TEXT, build_lm, package
    if not (KENLM_BINS / "lmplz").exists():
        pytest.skip("needs KenLM tools (make install)")
    tmp = tmp_path_factory.mktemp("our_lm")
    return package(tmp, build_lm(tmp, TEXT))


def noisy_utterance(rng, words):
    """Probabilities of a noisy model saying ``words``: each character peaks (weakly) on one frame of
    three, over random logits, so that the best paths compete and the beam matters."""
    text = " ".join(words)
    logits = rng.normal(0.0, 1.5, (3 * len(text), BLANK + 1))
    for i, ch in enumerate(text):
        logits[3 * i, ALPHABET.EncodeSingle(ch)] += 3.0
        logits[3 * i + 1:3 * i + 3, BLANK] += 3.0
    probs = np.exp(logits)
    return (probs / probs.sum(1, keepdims=True)).astype(np.float32)


def test_random_noisy_outputs_decode_exactly_as_mozilla(runtime, our_scorer, tmp_path):
    """Same transcript, confidence and token frames as libdeepspeech.so, with and without our scorer,
    at several beams and alpha/beta, with hot words; Mozilla loads the scorer we write."""
    rng = np.random.default_rng(7)
    scorer = Scorer(None, None, str(our_scorer), ALPHABET)
    vocab = sorted(scorer.vocabulary)
    checked = 0
    for u in range(6):
        probs = noisy_utterance(rng, [vocab[i] for i in rng.integers(0, len(vocab), rng.integers(2, 6))])
        write_replay_pb(probs, ALPHABET, tmp_path / f"r{u}.pb")
        audio = replay_audio(len(probs))
        with runtime.model(tmp_path / f"r{u}.pb") as model:
            for beam, alpha, beta, hot in [(1, 0, 0, None), (16, 0, 0, None), (100, 0, 0, None),
                                           (16, 0.75, 1.5, None), (100, 0.75, 1.5, None), (100, 2.0, 0.0, None),
                                           (64, 0.75, 1.5, {"cat": 3.0, "zebra": 1.0})]:
                model.set_beam_width(beam)
                if alpha or beta:
                    model.enable_scorer(our_scorer)
                    model.set_alpha_beta(alpha, beta)
                    scorer.reset_params(alpha, beta)
                for word, boost in (hot or {}).items():
                    model.add_hot_word(word, boost)
                theirs = model.stt_with_metadata(audio, 3)
                ours = ctc_beam_search_decoder(probs, ALPHABET, beam, scorer=scorer if alpha or beta else None,
                                               hot_words=hot, num_results=3)
                where = (u, beam, alpha, beta, hot)
                assert [c.text for c in theirs] == [r.transcript for r in ours], where
                assert [c.confidence for c in theirs] == pytest.approx([r.confidence for r in ours], abs=1e-3), where
                assert [[t.timestep for t in c.tokens] for c in theirs] == [r.timesteps for r in ours], where
                if hot:
                    model.clear_hot_words()
                if alpha or beta:
                    model.disable_scorer()
                checked += 1
    assert checked == 42


def test_bytes_mode_decodes_as_mozilla_with_our_bytes_scorer(runtime, tmp_path):
    """A bytes-output model (UTF8Alphabet) with a bytes-mode scorer built by our tools: the same token
    frames and confidences as libdeepspeech.so, the same text with the scorer. Without a scorer
    Mozilla may return invalid UTF-8 where we drop the bytes that make no character."""
    from test_ctcdecode import BYTES, KENLM_BINS, POEM, build_lm
    if not (KENLM_BINS / "lmplz").exists():
        pytest.skip("needs KenLM tools (make install)")
    lm = build_lm(tmp_path, POEM, "--character_level")
    scorer_path = tmp_path / "zh.bytes.scorer"
    subprocess.run([str(ROOT / ".venv" / "bin" / "generate_scorer_package"), "--lm", lm / "lm.binary", "--vocab",
                    lm / "vocab-500.txt", "--package", scorer_path, "--default_alpha", "0.75", "--default_beta",
                    "1.5", "--force_bytes_output_mode"], check=True, capture_output=True)
    scorer = Scorer(None, None, str(scorer_path), BYTES)
    chars = sorted(set("".join(POEM)))
    rng = np.random.default_rng(3)
    for u in range(4):
        data = "".join(rng.choice(chars) for _ in range(rng.integers(2, 6))).encode("utf-8")
        logits = rng.normal(0.0, 1.5, (2 * len(data), 256))
        for i, byte in enumerate(data):
            logits[2 * i, byte - 1] += 4.0
            logits[2 * i + 1, 255] += 4.0
        probs = np.exp(logits)
        probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
        write_replay_pb(probs, BYTES, tmp_path / f"b{u}.pb")
        audio = replay_audio(len(probs))
        with runtime.model(tmp_path / f"b{u}.pb") as model:
            for beam, with_scorer, hot in [(16, False, None), (100, False, None), (16, True, None),
                                           (100, True, None), (64, True, {"明": 3.0})]:
                model.set_beam_width(beam)
                if with_scorer:
                    model.enable_scorer(scorer_path)
                for word, boost in (hot or {}).items():
                    model.add_hot_word(word, boost)
                [theirs] = model.stt_with_metadata(audio, 1)
                [ours] = ctc_beam_search_decoder(probs, BYTES, beam, scorer=scorer if with_scorer else None,
                                                 hot_words=hot)
                where = (u, beam, with_scorer, hot)
                assert [t.timestep for t in theirs.tokens] == ours.timesteps, where
                assert theirs.confidence == pytest.approx(ours.confidence, abs=1e-3), where
                if with_scorer:
                    assert model.stt(audio) == ours.transcript and ours.transcript, where
                    model.clear_hot_words()
                    model.disable_scorer()
