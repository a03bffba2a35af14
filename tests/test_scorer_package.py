"""The .scorer layout: Mozilla DeepSpeech 0.9's header and OpenFST ConstFst vocabulary, then our trailer."""
import itertools
import struct

import pytest
from test_ctcdecode import ALPHABET, KENLM_BINS, TEXT, build_lm, package, probs_for

from ds_ctcdecoder import Alphabet, Scorer, ScorerError, ctc_beam_search_decoder
from ds_ctcdecoder import fst
from ds_ctcdecoder.package import (MAGIC, MOZILLA_HEADER, read_package, set_default_params,
                                   vocabulary_for, write_package)

SPACE = ALPHABET.EncodeSingle(" ") + 1
needs_kenlm = pytest.mark.skipif(not (KENLM_BINS / "lmplz").exists(), reason="needs KenLM tools (make install)")


def spell(word):
    """Mozilla's word-mode FST path of a word: alphabet ids + 1, then the space label."""
    return tuple(i + 1 for i in ALPHABET.Encode(word)) + (SPACE,)


def brute_force_minimal_states(words):
    """Myhill-Nerode: one state per distinct right language {w: p + w in L} over the prefixes p of L."""
    language = set(words)
    prefixes = {w[:i] for w in language for i in range(len(w) + 1)}
    return len({frozenset(w[len(p):] for w in language if w[:len(p)] == p) for p in prefixes})


def test_fst_spells_exactly_the_vocabulary_with_sorted_arcs():
    words = [spell(w) for w in ["the", "cat", "sat", "hat", "a", "at", "that", "than", "then"]]
    dfa = fst.minimal_dfa(reversed(words))
    data = bytes(7) + fst.const_fst_bytes(dfa, 7)  # at an odd file offset: padding is file-relative
    back, end = fst.read_const_fst(data, 7)
    assert end == len(data)
    assert sorted(fst.fst_words(back)) == sorted(words)
    assert all([label for label, _ in arcs] == sorted({label for label, _ in arcs}) for arcs in back.arcs)
    assert all(nxt > s for s, arcs in enumerate(back.arcs) for _, nxt in arcs)  # topological numbering
    assert back.finals.count(True) == 1  # every word ends with the space: one final state


def test_const_fst_bytes_follow_openfst_byte_for_byte():
    dfa = fst.minimal_dfa([(3, 1), (4, 1)])  # "b ", "c " with space = 1
    data = fst.const_fst_bytes(dfa, 5)
    header = struct.pack("<i", 2125659606) + struct.pack("<i", 5) + b"const" + struct.pack("<i", 8) + b"standard"
    props = (fst.K_EXPANDED | fst.K_ACCEPTOR | fst.K_I_DETERMINISTIC | fst.K_O_DETERMINISTIC
             | fst.K_NO_EPSILONS | fst.K_NO_I_EPSILONS | fst.K_NO_O_EPSILONS | fst.K_I_LABEL_SORTED
             | fst.K_O_LABEL_SORTED | fst.K_UNWEIGHTED | fst.K_ACYCLIC | fst.K_INITIAL_ACYCLIC
             | fst.K_TOP_SORTED | fst.K_ACCESSIBLE | fst.K_CO_ACCESSIBLE | fst.K_NOT_STRING
             | fst.K_UNWEIGHTED_CYCLES)
    header += struct.pack("<iiQqqq", 1, 4, props, 0, 3, 3)  # version 1 (aligned), flags IS_ALIGNED
    assert data[:len(header)] == header and len(header) == 65
    states_at = 80 - 5  # the header ends at file offset 5 + 65 = 70: zeros up to offset 80
    assert data[len(header):states_at] == bytes(states_at - len(header))
    inf = float("inf")
    assert data[states_at:states_at + 60] == (struct.pack("<fIIII", inf, 0, 2, 0, 0)  # 0 -b-> 1, -c-> 1
                                              + struct.pack("<fIIII", inf, 2, 1, 0, 0)  # 1 -space-> 2
                                              + struct.pack("<fIIII", 0.0, 3, 0, 0, 0))  # 2 final
    arcs_at = 144 - 5  # states end at file offset 140: zeros up to 144
    assert data[arcs_at:] == b"".join(struct.pack("<iifi", label, label, 0.0, nxt)
                                      for label, nxt in [(3, 1), (4, 1), (1, 2)])


def test_minimal_dfa_has_the_minimal_state_count():
    cases = [["cat", "hat", "bat"], ["a", "ab", "abc", "b", "bc"], ["tap", "taps", "top", "tops", "stop", "stops"]]
    for vocabulary in cases:  # suffix sharing: 'cat hat bat' is 0 -{b,c,h}-> 1 -a-> 2 -t-> 3 -space-> 4
        words = [spell(w) for w in vocabulary]
        assert len(fst.minimal_dfa(words).finals) == brute_force_minimal_states(words)
    assert len(fst.minimal_dfa([spell(w) for w in cases[0]]).finals) == 5
    letters = [tuple(p) for n in range(1, 4) for p in itertools.product((1, 2, 3), repeat=n)]
    for size in (1, 5, 17, 40):
        words = letters[::3][:size] + letters[1::7][:size]
        dfa = fst.minimal_dfa(words)
        assert len(dfa.finals) == brute_force_minimal_states(words)
        assert sorted(fst.fst_words(dfa)) == sorted(set(words))


def test_properties_of_a_single_word_include_kstring():
    dfa = fst.minimal_dfa([spell("the")])
    assert fst.properties(dfa) & fst.K_STRING and not fst.properties(dfa) & fst.K_NOT_STRING
    with pytest.raises(fst.FstError, match="no word"):
        fst.minimal_dfa([])


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    if not (KENLM_BINS / "lmplz").exists():
        pytest.skip("needs KenLM tools (make install)")
    tmp = tmp_path_factory.mktemp("scorer_lm")
    return build_lm(tmp, TEXT)


def mozilla_part(path):
    """The file as Mozilla's generate_scorer_package would have written it: our trailer cut off."""
    data = path.read_bytes()
    (trailer,) = struct.unpack_from("<Q", data, len(data) - 16)
    return data[:trailer]


def test_word_package_layout_reads_back(lm_dir, tmp_path):
    scorer = package(tmp_path, lm_dir)
    lm = (lm_dir / "lm.binary").read_bytes()
    vocab = list(dict.fromkeys((lm_dir / "vocab-500.txt").read_text().split()))
    data = scorer.read_bytes()
    assert data[:len(lm)] == lm
    assert MOZILLA_HEADER.unpack_from(data, len(lm)) == (b"EIRT", 6, False, 0.75, 1.5)
    dfa, end = fst.read_const_fst(data, len(lm) + 25)
    assert sorted(fst.fst_words(dfa)) == sorted(spell(w) for w in vocab)
    assert data[end:end + 8] == MAGIC and struct.unpack_from("<IQ", data, end + 8) == (2, len(lm))
    assert data[-16:] == struct.pack("<Q", end) + MAGIC
    info = read_package(str(scorer))
    assert (info.vocabulary, info.alphabet, info.alpha, info.beta, info.utf8_mode, info.mozilla) == \
        (tuple(vocab), ALPHABET, 0.75, 1.5, False, False)
    mozilla = tmp_path / "mozilla.scorer"  # the same file without our trailer: what Mozilla's tool writes
    mozilla.write_bytes(mozilla_part(scorer))
    assert sorted(vocabulary_for(read_package(str(mozilla)), ALPHABET)) == sorted(vocab)
    set_default_params(str(scorer), 0.5, 2.0)
    assert MOZILLA_HEADER.unpack_from(scorer.read_bytes(), len(lm))[3:] == (0.5, 2.0)
    assert (read_package(str(scorer)).alpha, read_package(str(scorer)).beta) == (0.5, 2.0)
    loaded = Scorer(None, None, str(scorer), ALPHABET)
    assert ctc_beam_search_decoder(probs_for("the kat sat"), ALPHABET, 32, scorer=loaded)[0][1] == "the cat sat"


def test_bytes_mode_fst_holds_utf8_bytes(tmp_path):
    if not (KENLM_BINS / "lmplz").exists():
        pytest.skip("needs KenLM tools (make install)")
    alphabet = Alphabet.from_labels(list("床前明月光疑是地上霜"))
    alphabet.to_file(str(tmp_path / "alphabet.txt"))
    lm = build_lm(tmp_path, ["床前明月光", "疑是地上霜", "明月光", "地上霜"] * 5, "--character_level")
    scorer = package(tmp_path, lm, "zh.scorer", tmp_path / "alphabet.txt")
    vocab = list(dict.fromkeys((lm / "vocab-500.txt").read_text(encoding="utf-8").split()))
    data = scorer.read_bytes()
    lm_size = (lm / "lm.binary").stat().st_size
    assert MOZILLA_HEADER.unpack_from(data, lm_size)[2] is True
    dfa, _ = fst.read_const_fst(data, lm_size + 25)
    assert sorted(fst.fst_words(dfa)) == sorted(tuple(c.encode("utf-8")) for c in vocab if c not in ("<s>", "</s>"))
    assert read_package(str(scorer)).vocabulary == tuple(vocab)
    mozilla = tmp_path / "mozilla.scorer"
    mozilla.write_bytes(mozilla_part(scorer))
    assert sorted(vocabulary_for(read_package(str(mozilla)), alphabet)) == \
        sorted(c for c in vocab if c not in ("<s>", "</s>"))


def test_version_1_packages_still_read(lm_dir, tmp_path):
    lm = (lm_dir / "lm.binary").read_bytes()
    serialized, words = ALPHABET.Serialize(), "the\ncat".encode()
    old = tmp_path / "v1.scorer"
    old.write_bytes(lm + MAGIC + struct.pack("<IB3x", 1, 0) + struct.pack("<dd", 0.25, 3.0)
                    + struct.pack("<I", len(serialized)) + serialized + struct.pack("<Q", len(words)) + words
                    + struct.pack("<Q", len(lm)) + MAGIC)
    info = read_package(str(old))
    assert (info.vocabulary, info.alpha, info.beta, info.alphabet, info.mozilla) == \
        (("the", "cat"), 0.25, 3.0, ALPHABET, False)
    set_default_params(str(old), 1.0, 0.5)
    assert (read_package(str(old)).alpha, read_package(str(old)).beta) == (1.0, 0.5)


def test_language_model_with_vocabulary_strings_is_refused(lm_dir, tmp_path):
    lm = bytearray((lm_dir / "lm.binary").read_bytes())
    lm[100] = 1  # KenLM's has_vocabulary: what build_binary writes without -v
    (tmp_path / "words.binary").write_bytes(lm)
    with pytest.raises(ScorerError, match=r"words.binary: .* rebuild it with build_binary -v"):
        write_package(str(tmp_path / "x.scorer"), str(tmp_path / "words.binary"), ["the"], ALPHABET, 1, 1, False)
    with pytest.raises(ScorerError, match=r"x.scorer: no word .*spelled with the alphabet"):
        write_package(str(tmp_path / "x.scorer"), str(lm_dir / "lm.binary"), ["<unk>", "ÿ"], ALPHABET, 1, 1, False)
