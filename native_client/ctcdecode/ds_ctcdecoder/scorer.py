"""Mozilla's ``Scorer``: a KenLM language model plus the vocabulary that constrains the search.

The flashlight-text structures (word dictionary, KenLM wrapper, lexicon trie) are built once, on the
first decode, and shared by every later one.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from .alphabet import Alphabet
from .bytes_lm import byte_trie, is_bytes_mode
from .package import ScorerError, read_package, vocabulary_for

log = logging.getLogger("deepspeech.ctcdecode")

LN10 = math.log(10.0)  # KenLM scores are log10; alpha and beta act on natural logs, as Mozilla's
UNK = "<unk>"


@dataclass
class Lexicon:
    words: object  # flashlight Dictionary: LM words, index 0 is <unk>
    lm: object  # flashlight KenLM
    trie: object  # spellings (alphabet ids) -> word index, smeared with unigram scores; in bytes
    # mode a dict trie of the characters' UTF-8 byte labels (bytes_lm.byte_trie)
    unk_index: int
    separator: int  # the label between words: space in word mode, blank in character mode
    order: int  # the LM's n


class Scorer:
    """``Scorer(alpha, beta, scorer_path, alphabet)``: alpha/beta None keep the package's defaults."""

    def __init__(self, alpha: float | None = None, beta: float | None = None,
                 scorer_path: str | None = None, alphabet: Alphabet | None = None):
        if not scorer_path:
            raise ScorerError("Scorer needs a scorer_path")
        if alphabet is None:
            raise ScorerError(f"{scorer_path}: Scorer needs the model's alphabet")
        self.package = read_package(scorer_path)
        self.alphabet = alphabet
        self.vocabulary = vocabulary_for(self.package, alphabet)
        if not self.vocabulary:
            raise ScorerError(f"{scorer_path}: the scorer has an empty vocabulary")
        self.alpha = self.package.alpha if alpha is None else float(alpha)
        self.beta = self.package.beta if beta is None else float(beta)
        self._lexicon: Lexicon | None = None

    @property
    def scorer_path(self) -> str:
        return self.package.path

    def reset_params(self, alpha: float, beta: float) -> None:
        self.alpha, self.beta = float(alpha), float(beta)

    def is_utf8_mode(self) -> bool:
        return self.package.utf8_mode

    def get_default_alpha(self) -> float:
        return self.package.alpha

    def get_default_beta(self) -> float:
        return self.package.beta

    def lexicon(self) -> Lexicon:
        if self._lexicon is None:
            self._lexicon = self._build_lexicon()
        return self._lexicon

    def _build_lexicon(self) -> Lexicon:
        from flashlight.lib.text.decoder import SmearingMode, Trie
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        words = Dictionary()
        words.add_entry(UNK)
        bytes_mode = is_bytes_mode(self.alphabet)  # the LM's tokens are characters, spelled in bytes
        usable = [w for w in self.vocabulary if w and w != UNK and self.alphabet.CanEncode(w)
                  and not w.startswith("<") and (len(w) == 1 or not bytes_mode)]
        for word in usable:
            words.add_entry(word)
        try:
            lm = KenLM(self.package.path, words)
        except Exception as err:  # flashlight raises RuntimeError/ValueError from KenLM's C++
            raise ScorerError(f"{self.package.path}: KenLM cannot load its language model ({err})") from err
        separator = self._separator()
        if len(usable) < len(self.vocabulary):
            log.info("%s: %d of %d vocabulary entries can be spelled with the %s", self.package.path,
                     len(usable), len(self.vocabulary), "UTF-8 bytes of one character" if bytes_mode
                     else "alphabet")
        if bytes_mode:
            trie = byte_trie((w, words.get_index(w)) for w in usable)
            return Lexicon(words, lm, trie, words.get_index(UNK), separator, self.package.order)
        trie = Trie(len(self.alphabet) + 1, separator)
        start = lm.start(True)  # no context: the look-ahead is each word's unigram, not P(word | <s>)
        # Word mode spells every word with its trailing space: a word ends only where the acoustic
        # model put a space, and flashlight's CTC repeat rule then holds for a word's last letter too
        # (a word emitted on its last letter could swallow a doubled letter: 'al' read as 'all').
        ending = [] if separator == self.alphabet.blank_id else [separator]
        for word in usable:
            index = words.get_index(word)
            _, unigram = lm.score(start, index)
            trie.insert(self.alphabet.encode(word) + ending, index, unigram)  # log10, as the LM's
        trie.smear(SmearingMode.MAX)
        return Lexicon(words, lm, trie, words.get_index(UNK), separator, self.package.order)

    def _separator(self) -> int:
        """The word separator: the space label in word mode; the blank in character mode."""
        if self.package.utf8_mode or not self.alphabet.CanEncodeSingle(" "):
            return self.alphabet.blank_id
        return self.alphabet.EncodeSingle(" ")
