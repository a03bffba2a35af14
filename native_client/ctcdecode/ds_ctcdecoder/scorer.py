"""Mozilla's ``Scorer``: a KenLM language model plus the vocabulary that constrains the search.

The native structures (KenLM, the vocabulary lexicon) are built once, on the first decode, and
shared by every later one.
"""
from __future__ import annotations

import logging
import math

from .alphabet import Alphabet, UTF8Alphabet
from .native import BYTES, CHARACTERS, WORDS, NativeScorer
from .package import ScorerError, read_package, vocabulary_for

log = logging.getLogger("deepspeech.ctcdecode")

LN10 = math.log(10.0)
SPECIAL = ("<s>", "</s>", "<unk>")


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
        self._native: NativeScorer | None = None
        self._vocabulary_set: frozenset | None = None

    @property
    def vocabulary_set(self) -> frozenset:
        if self._vocabulary_set is None:
            self._vocabulary_set = frozenset(self.vocabulary)
        return self._vocabulary_set

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

    @property
    def mode(self) -> int:
        """WORDS (the LM scores words at spaces), BYTES (a bytes-output model: the LM scores each UTF-8
        character once its last byte is out) or CHARACTERS (a character alphabet: every label)."""
        if not self.package.utf8_mode:
            return WORDS
        return BYTES if isinstance(self.alphabet, UTF8Alphabet) else CHARACTERS

    def load(self) -> NativeScorer:
        """The language model and the lexicon, loaded on first use."""
        if self._native is None:
            self._native = self._build()
        return self._native

    def _build(self) -> NativeScorer:
        alphabet = self.alphabet
        usable = [w for w in self.vocabulary if w and w not in SPECIAL and alphabet.CanEncode(w)]
        if len(usable) < len(self.vocabulary):
            log.info("%s: %d of %d vocabulary entries can be spelled with the alphabet", self.package.path,
                     len(usable), len(self.vocabulary))
        labels = [alphabet.DecodeSingle(i) for i in range(len(alphabet))]
        try:
            return NativeScorer(self.package.path, self.mode, self.space_label(),
                                labels, [alphabet.encode(w) for w in usable])
        except ValueError as err:
            raise ScorerError(f"{self.package.path}: KenLM cannot load its language model ({err})") from err

    def space_label(self) -> int:
        alphabet = self.alphabet
        return alphabet.EncodeSingle(" ") if alphabet.CanEncodeSingle(" ") else -1
