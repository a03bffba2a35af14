"""ds_ctcdecoder: Mozilla's API on our prefix search, scorer packages (ours and Mozilla's), LM tools."""
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from ds_ctcdecoder import (Alphabet, Scorer, ScorerError, UTF8Alphabet, ctc_beam_search_decoder,
                           ctc_beam_search_decoder_batch)
from ds_ctcdecoder.package import read_package, set_default_params

KENLM_BINS = ROOT / ".cache" / "kenlm" / "bin"
needs_kenlm = pytest.mark.skipif(not (KENLM_BINS / "lmplz").exists(), reason="needs KenLM tools (make install)")
ALPHABET = Alphabet.from_labels(list(" abcdefghijklmnopqrstuvwxyz'"))
TEXT = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "the cat ate the rat",
        "a dog ate the cat", "the rat sat on a mat", "they call the dog"] * 5


def probs_for(text, alphabet=ALPHABET, confusion=None):
    """One frame per character then one blank; ``confusion`` = {position: (other char, its share)}."""
    n = len(alphabet) + 1
    rows = []
    for i, ch in enumerate(text):
        row = np.full(n, 0.01)
        row[alphabet.EncodeSingle(ch)] = 1.0
        if confusion and i in confusion:
            other, share = confusion[i]
            row[alphabet.EncodeSingle(other)] = share
        rows += [row, np.full(n, 0.01)]
        rows[-1][-1] = 1.0
    p = np.array(rows)
    return p / p.sum(1, keepdims=True)


def build_lm(tmp_path, lines, *extra):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "lm"
    subprocess.run([sys.executable, str(ROOT / "data" / "lm" / "generate_lm.py"), "--input_txt", text,
                    "--output_dir", out, "--top_k", "500", "--arpa_order", "3", "--max_arpa_memory", "10%",
                    "--arpa_prune", "0|0|0", "--binary_a_bits", "255", "--binary_q_bits", "8",
                    "--binary_type", "trie", "--discount_fallback", "--kenlm_bins", KENLM_BINS, *extra],
                   check=True, capture_output=True)
    return out


def package(tmp_path, lm_dir, name="kenlm.scorer", alphabet_file=None, *extra):
    if alphabet_file is None:
        alphabet_file = tmp_path / "alphabet.txt"
        ALPHABET.to_file(str(alphabet_file))
    scorer = tmp_path / name
    subprocess.run([str(ROOT / ".venv" / "bin" / "generate_scorer_package"), "--alphabet", alphabet_file,
                    "--lm", lm_dir / "lm.binary", "--vocab", lm_dir / "vocab-500.txt", "--package", scorer,
                    "--default_alpha", "0.75", "--default_beta", "1.5", *extra], check=True, capture_output=True)
    return scorer


@pytest.fixture(scope="module")
def word_scorer(tmp_path_factory):
    if not (KENLM_BINS / "lmplz").exists():
        pytest.skip("needs KenLM tools (make install)")
    tmp = tmp_path_factory.mktemp("word_lm")
    return package(tmp, build_lm(tmp, TEXT))


def test_alphabet_mozilla_api_and_serialization():
    assert ALPHABET.GetSize() == 28 and ALPHABET.EncodeSingle("a") == 1 and ALPHABET.DecodeSingle(0) == " "
    assert ALPHABET.Encode("cab") == [3, 1, 2] and ALPHABET.Decode([3, 1, 2]) == "cab"
    assert ALPHABET.CanEncode("a cat") and not ALPHABET.CanEncode("Cat")
    assert Alphabet.Deserialize(ALPHABET.Serialize()) == ALPHABET
    utf8 = UTF8Alphabet()
    assert utf8.GetSize() == 255 and utf8.Decode(utf8.Encode("数 a")) == "数 a"


def test_beam_search_without_scorer_reads_the_best_path():
    [(confidence, text)] = ctc_beam_search_decoder(probs_for("the kat sat"), ALPHABET, 16)
    assert text == "the kat sat" and confidence < 0


def test_word_scorer_fixes_a_misheard_word_and_times_characters(word_scorer):
    scorer = Scorer(None, None, str(word_scorer), ALPHABET)
    assert (scorer.alpha, scorer.beta) == (0.75, 1.5) and not scorer.is_utf8_mode()
    probs = probs_for("the kat sat")  # 'k' is not a word the scorer knows: the lexicon forbids it
    best = ctc_beam_search_decoder(probs, ALPHABET, 32, scorer=scorer)[0]
    assert best.transcript == "the cat sat"
    assert best.timesteps == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]  # one frame per character + blank
    results = ctc_beam_search_decoder(probs, ALPHABET, 32, scorer=scorer, num_results=3)
    assert len({r.transcript for r in results}) == 3 and results[0].confidence >= results[1].confidence
    # the paper's pruning keeps the answer of a confident model
    # (Mozilla's pruning: per frame, the fewest labels reaching cutoff_prob, at most cutoff_top_n)
    heard = probs_for("the kat sat", confusion={4: ("c", 0.5)})
    pruned = ctc_beam_search_decoder(heard, ALPHABET, 32, cutoff_prob=0.9, cutoff_top_n=5, scorer=scorer)
    assert pruned[0].transcript == "the cat sat"
    too_few = ctc_beam_search_decoder(heard, ALPHABET, 32, cutoff_prob=0.5, cutoff_top_n=5, scorer=scorer)
    assert too_few[0].transcript != "the cat sat"  # only 'k' is tried at that frame


def test_words_end_at_a_space_and_keep_ctc_repeats(word_scorer):
    scorer = Scorer(None, None, str(word_scorer), ALPHABET)
    vocabulary = set(scorer.vocabulary)
    # 'l' on two frames without a blank is one 'l' in CTC: it cannot spell the double 'l' of 'call'
    frames = "the ca" + "ll" + " the dog"
    probs = np.full((len(frames), len(ALPHABET) + 1), 0.01)
    for t, ch in enumerate(frames):
        probs[t, ALPHABET.EncodeSingle(ch)] = 1.0
    probs /= probs.sum(1, keepdims=True)
    best = ctc_beam_search_decoder(probs, ALPHABET, 64, scorer=scorer)[0]
    assert set(best.transcript.split()) <= vocabulary, best.transcript
    assert best.transcript.endswith("the dog") and len(best.timesteps) == len(best.transcript)


def test_an_unknown_last_word_gives_one_ranked_answer(word_scorer):
    scorer = Scorer(None, None, str(word_scorer), ALPHABET)
    assert "zebra" not in set(scorer.vocabulary)
    frames = "the cat sat zebra"  # the lexicon cannot spell the last word: no hypothesis ends on a word
    probs = np.full((len(frames), len(ALPHABET) + 1), 1e-6)
    for t, ch in enumerate(frames):
        probs[t, ALPHABET.EncodeSingle(ch)] = 1.0
    probs /= probs.sum(1, keepdims=True)
    results = [ctc_beam_search_decoder(probs, ALPHABET, 64, scorer=scorer, num_results=3) for _ in range(4)]
    assert all([r.transcript for r in run] == [r.transcript for r in results[0]] for run in results)
    best = results[0][0]
    assert best.transcript.startswith("the cat sat") and best.confidence > -1e6, best


def test_pruned_frames_the_lexicon_cannot_spell_do_not_end_the_search(word_scorer):
    """With --cutoff_prob below 1 a frame can keep only a label that no vocabulary word continues
    with ('z' here, all the frame's mass): the blank carries the beam through it, as it would
    without pruning; the search went on at -infinity and the transcript stopped there."""
    from ds_ctcdecoder import DecoderState

    scorer = Scorer(None, None, str(word_scorer), ALPHABET)
    frames = "the cat sat " + "z" + " the dog sat on the mat"
    probs = np.full((len(frames), len(ALPHABET) + 1), 1e-7)
    for t, ch in enumerate(frames):
        probs[t, ALPHABET.EncodeSingle(ch)] = 1.0
    probs /= probs.sum(1, keepdims=True)
    for cutoff_prob in (1.0, 0.99):
        best = ctc_beam_search_decoder(probs, ALPHABET, 16, cutoff_prob=cutoff_prob, scorer=scorer)[0]
        assert best.transcript == "the cat sat the dog sat on the mat", (cutoff_prob, best)
        assert best.confidence > -1e6
        stream = DecoderState(ALPHABET, 16, cutoff_prob=cutoff_prob, scorer=scorer)
        for start in range(0, len(probs), 5):
            stream.next(probs[start:start + 5])
        assert stream.decode(1)[0].transcript == best.transcript


def test_beam_threshold_drops_prefixes_far_below_the_best(word_scorer):
    from ds_ctcdecoder import DecoderState

    scorer = Scorer(None, None, str(word_scorer), ALPHABET)
    probs = probs_for("the cat sat on the mat", confusion={4: ("r", 0.3), 8: ("o", 0.2)})
    answers = {}
    for threshold in (0.0, 10.0, 2.0):
        state = DecoderState(ALPHABET, 64, scorer=scorer, beam_threshold=threshold)
        state.next(probs)
        answers[threshold] = state.decode(64)
    # the best transcript stays (its score a little lower: paths through dropped prefixes no longer add up)
    assert answers[2.0][0].transcript == answers[10.0][0].transcript == answers[0.0][0].transcript
    assert len(answers[0.0]) == 64 and 1 <= len(answers[2.0]) < len(answers[10.0]) < 64


def test_settle_after_makes_old_text_final(word_scorer):
    """A long stream: without settling, an early alternative ('rat' for 'cat') is carried along to the
    end; with settle_after, text more than 2 x settle_after labels before the end is shared by all."""
    from ds_ctcdecoder import DecoderState

    scorer = Scorer(None, None, str(word_scorer), ALPHABET)
    text = " ".join(["the cat sat on the mat"] * 12)
    probs = probs_for(text, confusion={4: ("r", 0.6)})
    answers = {}
    for settle_after in (0, 20):
        state = DecoderState(ALPHABET, 32, scorer=scorer, settle_after=settle_after)
        for start in range(0, len(probs), 16):
            state.next(probs[start:start + 16])
        answers[settle_after] = [r.transcript for r in state.decode(32)]
    assert answers[0][0] == answers[20][0] == text
    assert any(t.startswith("the rat") for t in answers[0])  # the early alternative is still in the beam
    assert len(answers[20]) > 1 and all(t[:len(text) - 40] == text[:len(text) - 40] for t in answers[20])


def test_hot_words_boost_a_word(word_scorer):
    scorer = Scorer(0.75, 0.0, str(word_scorer), ALPHABET)
    probs = probs_for("the cat sat", confusion={4: ("r", 0.9)})  # 'cat' slightly over 'rat'
    assert ctc_beam_search_decoder(probs, ALPHABET, 32, scorer=scorer)[0].transcript == "the cat sat"
    boosted = ctc_beam_search_decoder(probs, ALPHABET, 32, scorer=scorer, hot_words={"rat": 3.0})
    assert boosted[0].transcript == "the rat sat"


def test_hot_word_boost_spans_the_ngram_window_as_mozilla(word_scorer):
    """Mozilla adds a hot word's boost to every n-gram scored with it inside (alpha-weighted); the
    last word, scored when the audio ends, gets no boost."""
    scorer = Scorer(1.0, 0.0, str(word_scorer), ALPHABET)
    assert scorer.load().order == 3
    probs = probs_for("the cat sat on the mat")
    plain = ctc_beam_search_decoder(probs, ALPHABET, 32, scorer=scorer)[0]
    hot = ctc_beam_search_decoder(probs, ALPHABET, 32, scorer=scorer, hot_words={"cat": 2.0})[0]
    assert plain.transcript == hot.transcript == "the cat sat on the mat"
    # 3-grams ending at 'cat', 'sat' and 'on' contain 'cat'
    assert hot.confidence - plain.confidence == pytest.approx(3 * 2.0, abs=1e-4)


def test_batch_decoding_in_processes_equals_one_by_one(word_scorer):
    scorer = Scorer(None, None, str(word_scorer), ALPHABET)
    texts = ["the cat sat", "a dog", "the rat ate the cat", "the log"]
    probs = [probs_for(t) for t in texts]
    width = max(len(p) for p in probs)
    batch = np.stack([np.pad(p, ((0, width - len(p)), (0, 0))) for p in probs])
    results = ctc_beam_search_decoder_batch(batch, [len(p) for p in probs], ALPHABET, 32, 2, scorer=scorer)
    assert [r[0].transcript for r in results] == texts
    single = [ctc_beam_search_decoder(p, ALPHABET, 32, scorer=scorer)[0] for p in probs]
    assert [r[0].confidence for r in results] == pytest.approx([s.confidence for s in single])


@needs_kenlm
def test_character_scorer_for_mandarin(tmp_path):
    alphabet = Alphabet.from_labels(list("床前明月光疑是地上霜"))
    alphabet.to_file(str(tmp_path / "alphabet.txt"))
    lm = build_lm(tmp_path, ["床前明月光", "疑是地上霜", "明月光", "地上霜"] * 5, "--character_level")
    scorer = Scorer(None, None, str(package(tmp_path, lm, "zh.scorer", tmp_path / "alphabet.txt")), alphabet)
    assert scorer.is_utf8_mode()
    probs = probs_for("明月光", alphabet, confusion={1: ("是", 0.95)})  # 月 barely wins over 是
    scorer.reset_params(0.0, 0.0)
    assert ctc_beam_search_decoder(probs, alphabet, 16, scorer=scorer)[0].transcript == "明月光"
    scorer.reset_params(2.0, 0.0)
    assert ctc_beam_search_decoder(probs_for("明是光", alphabet, confusion={1: ("月", 0.8)}), alphabet, 16,
                                   scorer=scorer)[0].transcript == "明月光"  # the LM prefers 明月光


def mozilla_fst_words(vocab, alphabet=ALPHABET):
    """Mozilla's word-mode FST paths: each word's label ids + 1, then the space label (its id + 1)."""
    return [[i + 1 for i in alphabet.Encode(w)] + [alphabet.EncodeSingle(" ") + 1] for w in vocab]


def write_mozilla_scorer(path, lm_binary, vocab, alpha=0.931289039105002, beta=1.1834137581510284):
    with open(path, "wb") as f:
        f.write(lm_binary.read_bytes() + struct.pack("<i", 0x54524945) + struct.pack("<i?dd", 6, False, alpha, beta))
        write_const_fst(f, mozilla_fst_words(vocab))
    return path


def write_const_fst(f, words):
    """An OpenFST ConstFst (aligned, as Mozilla writes it) accepting ``words`` (label ids + 1).

    Written by hand (a plain trie, properties left unknown) to check the reader apart from fst.py.
    """
    trie, finals = [{}], set()
    for word in words:
        node = 0
        for label in word:
            if label not in trie[node]:
                trie.append({})
                trie[node][label] = len(trie) - 1
            node = trie[node][label]
        finals.add(node)
    header = struct.pack("<i", 2125659606)
    for s in (b"const", b"standard"):
        header += struct.pack("<i", len(s)) + s
    arcs = [(label, nxt) for node in trie for label, nxt in sorted(node.items())]
    header += struct.pack("<iiQqqq", 1, 4, 0, 0, len(trie), len(arcs))  # version 1, IS_ALIGNED
    f.write(header)
    f.write(b"\0" * (-f.tell() % 16))
    pos = 0
    for i, node in enumerate(trie):
        f.write(struct.pack("<fIIII", 0.0 if i in finals else float("inf"), pos, len(node), 0, len(node)))
        pos += len(node)
    f.write(b"\0" * (-f.tell() % 16))
    for label, nxt in arcs:
        f.write(struct.pack("<iifi", label, label, 0.0, nxt))


def test_reads_mozilla_scorer_files(word_scorer, tmp_path):
    vocab = (word_scorer.parent / "lm" / "vocab-500.txt").read_text().split()
    mozilla = write_mozilla_scorer(tmp_path / "mozilla.scorer", word_scorer.parent / "lm" / "lm.binary", vocab)
    info = read_package(str(mozilla))
    assert info.mozilla and (info.alpha, info.beta) == (0.931289039105002, 1.1834137581510284)
    scorer = Scorer(None, None, str(mozilla), ALPHABET)
    assert sorted(scorer.vocabulary) == sorted(vocab)
    assert ctc_beam_search_decoder(probs_for("the kat sat"), ALPHABET, 32, scorer=scorer)[0][1] == "the cat sat"
    set_default_params(str(mozilla), 0.5, 2.0)
    assert (read_package(str(mozilla)).alpha, read_package(str(mozilla)).beta) == (0.5, 2.0)


def issue_probs(text, final_blank=True, alphabet=ALPHABET):
    """The issue's probabilities: per character the character at 0.6, blank 0.2, the rest 1e-4
    (renormalized), then a blank frame at 0.98; ``final_blank=False`` ends on the last character."""
    n = len(alphabet) + 1
    rows = []
    for i, ch in enumerate(text):
        row = np.full(n, 1e-4)
        row[alphabet.EncodeSingle(ch)], row[-1] = 0.6, 0.2
        rows.append(row / row.sum())
        if final_blank or i < len(text) - 1:
            row = np.full(n, 0.02 / (n - 1))
            row[-1] = 0.98
            rows.append(row)
    return np.array(rows)


@pytest.fixture(scope="module")
def sentence_end_lm(tmp_path_factory):
    """A 3-gram LM whose text never ends a sentence on 'of' (nor on 'yea')."""
    if not (KENLM_BINS / "lmplz").exists():
        pytest.skip("needs KenLM tools (make install)")
    tmp = tmp_path_factory.mktemp("sentence_end_lm")
    lines = ["it is the best of times", "it was the worst of times", "the best of all"] * 5 \
        + ["it is the best"] * 15 + ["all year long", "yea or nay", "wash the water all year"] * 5
    return build_lm(tmp, lines)


def test_last_word_is_kept_though_the_lm_never_ends_a_sentence_on_it(sentence_end_lm, tmp_path):
    """Mozilla scores no end-of-sentence: a last word is judged as any other word."""
    scorer = Scorer(None, None, str(package(tmp_path, sentence_end_lm)), ALPHABET)
    assert {"it", "is", "the", "best", "of"} <= set(scorer.vocabulary)
    scorer.reset_params(0.931289039105002, 1.1834137581510284)
    for final_blank in (True, False):
        best = ctc_beam_search_decoder(issue_probs("it is the best of", final_blank), ALPHABET, 64, scorer=scorer)
        assert best[0].transcript == "it is the best of"


def test_mozilla_scorer_keeps_the_last_letter_of_the_last_word(sentence_end_lm, tmp_path):
    """Mozilla's FST spells each word with its space; the last word of an utterance has none."""
    vocab = (sentence_end_lm / "vocab-500.txt").read_text().split()
    assert {"year", "yea"} <= set(vocab)
    scorer = Scorer(None, None, str(write_mozilla_scorer(tmp_path / "m.scorer", sentence_end_lm / "lm.binary",
                                                          vocab)), ALPHABET)
    assert sorted(scorer.vocabulary) == sorted(vocab)
    for alpha, beta in [(0.0, 0.0), (0.931289039105002, 1.1834137581510284), (2.0, 0.0)]:
        scorer.reset_params(alpha, beta)
        for beam in (16, 64, 500):
            best = ctc_beam_search_decoder(probs_for("wash the water all year")[:-1], ALPHABET, beam, scorer=scorer)
            assert best[0].transcript == "wash the water all year", (alpha, beta, beam)


def test_a_hot_word_outside_the_vocabulary_is_accepted_and_changes_nothing(word_scorer, caplog):
    scorer = Scorer(None, None, str(word_scorer), ALPHABET)
    probs = probs_for("the cat sat")
    plain = ctc_beam_search_decoder(probs, ALPHABET, 32, scorer=scorer)[0]
    with caplog.at_level("WARNING", logger="deepspeech.ctcdecode"):
        hot = ctc_beam_search_decoder(probs, ALPHABET, 32, scorer=scorer, hot_words={"zebra": 5.0, "the": 0.0})[0]
    assert (hot.transcript, hot.confidence) == (plain.transcript, pytest.approx(plain.confidence))
    assert "'zebra' is not in the scorer's vocabulary" in caplog.text


def test_bad_scorers_and_probabilities_give_clear_errors(word_scorer, tmp_path):
    with pytest.raises(ScorerError, match="nope.scorer: scorer file not found"):
        Scorer(None, None, str(tmp_path / "nope.scorer"), ALPHABET)
    (tmp_path / "text.scorer").write_text("hello")
    with pytest.raises(ScorerError, match="text.scorer: not a scorer"):
        Scorer(None, None, str(tmp_path / "text.scorer"), ALPHABET)
    bare = tmp_path / "bare.scorer"
    shutil.copy(word_scorer.parent / "lm" / "lm.binary", bare)
    with pytest.raises(ScorerError, match="bare.scorer: a bare KenLM model"):
        Scorer(None, None, str(bare), ALPHABET)
    data = word_scorer.read_bytes()
    (tmp_path / "cut.scorer").write_bytes(data[:len(data) - 40])
    with pytest.raises(ScorerError, match="cut.scorer"):
        Scorer(None, None, str(tmp_path / "cut.scorer"), ALPHABET)
    other = Alphabet.from_labels(list(" abcdefghijklmnopqrstuvwxyz"))
    with pytest.raises(ScorerError, match="built for another alphabet .28 labels, the model has 27"):
        Scorer(None, None, str(word_scorer), other)
    with pytest.raises(ValueError, match=r"expected \[time, 29\]"):
        ctc_beam_search_decoder(np.ones((5, 30)) / 30, ALPHABET, 8)


BYTES = UTF8Alphabet()
POEM = ["床前明月光", "疑是地上霜", "明月光", "地上霜"] * 5


def byte_probs(text, frames=2, confusion=None):
    """Each UTF-8 byte of ``text`` held ``frames`` frames, a blank after each character and between
    equal bytes; ``confusion`` = {byte position: (other byte, its share)}."""
    n, rows, position = len(BYTES) + 1, [], 0

    def frame(label, other=None):
        row = np.full(n, 0.001)
        row[label] = 1.0
        if other:
            row[other[0] - 1] = other[1]
        rows.append(row / row.sum())

    for char in text:
        previous = None
        for byte in char.encode("utf-8"):
            if byte == previous:
                frame(BYTES.blank_id)
            for _ in range(frames):
                frame(byte - 1, (confusion or {}).get(position))
            previous, position = byte, position + 1
        frame(BYTES.blank_id)
    return np.array(rows)


@pytest.fixture(scope="module")
def bytes_scorer(tmp_path_factory):
    """A bytes-mode scorer as Mozilla's workflow builds one: character-level LM, no alphabet."""
    if not (KENLM_BINS / "lmplz").exists():
        pytest.skip("needs KenLM tools (make install)")
    tmp = tmp_path_factory.mktemp("bytes_lm")
    lm = build_lm(tmp, POEM, "--character_level")
    scorer = tmp / "zh.bytes.scorer"
    subprocess.run([str(ROOT / ".venv" / "bin" / "generate_scorer_package"), "--lm", lm / "lm.binary",
                    "--vocab", lm / "vocab-500.txt", "--package", scorer, "--default_alpha", "0.75",
                    "--default_beta", "1.5", "--force_bytes_output_mode"], check=True, capture_output=True)
    return scorer


def test_utf8_decoding_drops_what_is_no_whole_character():
    from ds_ctcdecoder.alphabet import utf8_characters
    labels = [b - 1 for b in b"\xe6\x98\x8e" + b"\x9c" + b"A" + b"\xe6\x9c" + b"\xc0\x80" + b"\xe5\x85\x89"
              + b"\xed\xa0\x80" + b"\xe6"]  # 明, stray, A, cut 月, overlong, 光, surrogate, cut lead
    assert BYTES.decode(labels) == "明A光"
    assert utf8_characters(labels, list(range(100, 100 + len(labels)))) == [("明", 100), ("A", 104),
                                                                              ("光", 109)]
    assert BYTES.encode("明 A") == [0xE6 - 1, 0x98 - 1, 0x8E - 1, 31, 64]


@needs_kenlm
def test_bytes_mode_scorer_decodes_a_mandarin_sentence(bytes_scorer):
    scorer = Scorer(None, None, str(bytes_scorer), BYTES)
    assert scorer.is_utf8_mode() and sorted(scorer.vocabulary) == sorted(set("".join(POEM)))
    for frames in (1, 3):  # a byte held over several frames is one byte (CTC's repeat rule)
        best = ctc_beam_search_decoder(byte_probs("床前明月光", frames), BYTES, 32, scorer=scorer)[0]
        assert best.transcript == "床前明月光"
        assert best.tokens == BYTES.encode("床前明月光")
    assert ctc_beam_search_decoder(byte_probs("疑是地上霜"), BYTES, 32)[0].transcript == "疑是地上霜"


@needs_kenlm
def test_bytes_mode_scorer_repairs_an_invalid_byte_sequence(bytes_scorer):
    # 月 = E6 9C 88: its second byte heard as a lead byte E6 slightly more than 9C
    probs = byte_probs("明月光", confusion={4: (0xE6, 1.2)})
    best = probs.argmax(1)
    greedy = [int(c) for i, c in enumerate(best) if c != BYTES.blank_id and (i == 0 or c != best[i - 1])]
    with pytest.raises(UnicodeDecodeError):
        bytes(g + 1 for g in greedy).decode("utf-8")  # the best path is no UTF-8
    assert BYTES.decode(greedy) == "明光"  # its bad bytes are dropped, no U+FFFD
    scorer = Scorer(None, None, str(bytes_scorer), BYTES)
    assert ctc_beam_search_decoder(probs, BYTES, 32, scorer=scorer)[0].transcript == "明月光"
    scorer.reset_params(2.0, 0.0)  # the LM also picks between two vocabulary characters
    confused = byte_probs("明是光", confusion={4: (0x9C, 0.8), 5: (0x88, 0.8)})  # 是 E6 98 AF vs 月
    assert ctc_beam_search_decoder(confused, BYTES, 32)[0].transcript == "明是光"
    assert ctc_beam_search_decoder(confused, BYTES, 32, scorer=scorer)[0].transcript == "明月光"
    scorer.reset_params(1.0, 0.0)
    assert ctc_beam_search_decoder(confused, BYTES, 32, scorer=scorer, hot_words={"是": 4.0})[0].transcript \
        == "明是光"  # hot words boost characters in bytes mode too (a bigger boost inserts more 是, as Mozilla's)


@needs_kenlm
def test_reads_mozilla_bytes_mode_scorer_files(bytes_scorer, tmp_path):
    lm = (bytes_scorer.parent / "lm" / "lm.binary").read_bytes()
    chars = sorted(set("".join(POEM)))
    mozilla = tmp_path / "mozilla.bytes.scorer"
    with open(mozilla, "wb") as f:  # Mozilla's UTF-8 mode: FST label = UTF8Alphabet label + 1 = byte
        f.write(lm + struct.pack("<i", 0x54524945) + struct.pack("<i?dd", 6, True, 0.75, 1.5))
        write_const_fst(f, [list(c.encode("utf-8")) for c in chars])
    scorer = Scorer(None, None, str(mozilla), BYTES)
    assert scorer.is_utf8_mode() and sorted(scorer.vocabulary) == chars
    assert ctc_beam_search_decoder(byte_probs("地上霜", 2), BYTES, 16, scorer=scorer)[0].transcript == "地上霜"
    with pytest.raises(ScorerError, match="word scorer cannot decode a bytes-output"):
        Scorer(None, None, str(package(tmp_path, build_lm(tmp_path, TEXT))), BYTES)


def test_a_missing_decoder_library_is_one_clear_oserror(monkeypatch, tmp_path):
    """Entry points report OSErrors in one line (the client) or list this one (the trainer)."""
    from ds_ctcdecoder import native

    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setenv("DS_CTCDECODE_LIBRARY", str(tmp_path / "nope.so"))
    with pytest.raises(OSError, match=r"nope.so is missing: build the decoder with `make install`"):
        ctc_beam_search_decoder(probs_for("the cat"), ALPHABET, 8)


@pytest.mark.parametrize("settle_after", [0, 6])
def test_transcript_is_the_best_decode_at_every_frame(word_scorer, settle_after):
    """DecoderState.transcript() (the server's partials) == decode(1)[0].transcript after every chunk,
    with the settled text kept between calls when settling; also for a UTF-8 (bytes) alphabet."""
    from ds_ctcdecoder import DecoderState

    scorer = Scorer(None, None, str(word_scorer), ALPHABET)
    text = " ".join(["the cat sat on the mat", "a dog ate the rat"] * 4)
    probs = probs_for(text, confusion={4: ("r", 0.6), 30: ("o", 0.5)})
    state = DecoderState(ALPHABET, 16, scorer=scorer, settle_after=settle_after)
    assert state.transcript() == "" == state.decode(1)[0].transcript
    for start in range(0, len(probs), 3):
        state.next(probs[start:start + 3])
        assert state.transcript() == state.decode(1)[0].transcript
    assert state.transcript() == text
    assert (state._settled[0] > len(text) // 2) == bool(settle_after)  # kept, not walked again

    utf8 = UTF8Alphabet()
    word = "añob "
    n = utf8.GetSize() + 1
    rows = []
    for byte in word.encode("utf-8"):
        rows += [np.eye(n)[byte - 1] * 0.9 + 0.1 / n, np.eye(n)[-1] * 0.9 + 0.1 / n]
    bytes_state = DecoderState(utf8, 8, settle_after=settle_after)
    for row in rows:
        bytes_state.next(np.array([row]))
        assert bytes_state.transcript() == bytes_state.decode(1)[0].transcript
    assert bytes_state.transcript() == word
