"""Bytes output mode with a scorer: the model emits UTF-8 byte labels, the LM's tokens are characters.

Mozilla's decoder in UTF-8 mode walks a vocabulary FST spelled in bytes and queries the LM at every
complete codepoint. Here flashlight's lexicon-free CTC beam search runs over the byte labels and this
LM wrapper plays the vocabulary FST:

- its state is (the character LM's state, a node of the byte trie of the scorer's characters);
- a byte that continues a vocabulary character scores 0 (as Mozilla: no look-ahead inside a character);
- the byte that completes one scores ``alpha * ln P(char | history) + beta``, Mozilla's per-codepoint
  scoring;
- any other byte costs ``OUT_OF_VOCABULARY`` and abandons the character it interrupts (the state goes
  back to the last complete character). Mozilla's FST forbids such a byte outright; here a finite
  cost keeps a hypothesis when the beam threshold has pruned every one that spells vocabulary
  characters only (otherwise the search could end with nothing), while any such hypothesis in the
  beam outranks it. Its stray bytes are dropped from the transcript (``utf8_characters``), so the text
  is always valid UTF-8 and normally only vocabulary characters.
- A space is no vocabulary character (the vocabulary is split on whitespace), so none is emitted --
  as Mozilla's bytes-mode scorers, whose FST holds no space either.

The lexicon-free decoder keeps CTC's repeat rule for every byte (a character's last byte held over
several frames is one byte), which the lexicon decoder cannot do for words without a separator.
At the end of the utterance a hypothesis inside a character is ranked below every complete one.
"""
from __future__ import annotations

from .alphabet import Alphabet, UTF8Alphabet

OUT_OF_VOCABULARY = -1000.0  # a byte that spells no vocabulary character; also ending inside one


def is_bytes_mode(alphabet: Alphabet) -> bool:
    return isinstance(alphabet, UTF8Alphabet)


def byte_trie(words) -> dict:
    """{label: child node | word index} over the UTF-8 bytes (label = byte - 1) of each character.

    ``words``: (character, word index) pairs. UTF-8 is prefix-free, so a complete character is a leaf.
    """
    root: dict = {}
    for char, index in words:
        node, labels = root, [b - 1 for b in char.encode("utf-8")]
        for label in labels[:-1]:
            node = node.setdefault(label, {})
        node[labels[-1]] = index
    return root


def spelled_lm(trie: dict, inner, weight: float, word_score: float):
    """A flashlight ``LM`` over byte labels around ``inner`` (KenLM, or its hot-word wrapper), whose
    tokens are the trie's word indices; ``weight`` multiplies its scores (alpha, in log10 units)."""
    from flashlight.lib.text.decoder import LM

    class SpelledLM(LM):
        def __init__(self):
            LM.__init__(self)
            self.where = {}  # state -> (inner LM state at the last complete character, trie node)

        def start(self, start_with_nothing):
            self.where.clear()
            state = inner.start(start_with_nothing)
            self.where[state] = (state, trie)
            return state

        def score(self, state, label):
            context, node = self.where[state]
            nxt = node.get(label)
            if nxt is None:
                return context, OUT_OF_VOCABULARY
            if isinstance(nxt, dict):
                child = state.child(label)  # the same history always gets the same child state
                self.where[child] = (context, nxt)
                return child, 0.0
            new_state, score = inner.score(context, nxt)
            self.where[new_state] = (new_state, trie)
            return new_state, weight * score + word_score

        def finish(self, state):
            context, node = self.where[state]
            if node is not trie:
                return state, OUT_OF_VOCABULARY
            new_state, score = inner.finish(context)
            return new_state, weight * score

    return SpelledLM()
