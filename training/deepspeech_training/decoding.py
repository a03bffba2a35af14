"""From the model's output to text: greedy best path, or CTC beam search with an optional KenLM scorer."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ds_ctcdecoder import Alphabet, Scorer, ctc_beam_search_decoder_batch


@dataclass(frozen=True)
class DecoderConfig:
    beam_width: int = 1024  # 0: greedy
    scorer_path: str = ""
    lm_alpha: float = 0.931289039105002
    lm_beta: float = 1.1834137581510284
    cutoff_prob: float = 1.0
    cutoff_top_n: int = 300
    num_processes: int = 1


def greedy_decode(logits: np.ndarray, lengths: np.ndarray, blank: int) -> list[list[int]]:
    """Best path: argmax per frame, repeats merged, blanks removed."""
    best = logits.argmax(axis=-1)
    out = []
    for row, n in zip(best, lengths):
        row = row[:n]
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        out.append([int(c) for c in row[keep] if c != blank])
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class Decoder:
    """Decodes batches of logits; the scorer is loaded once and shared by every batch."""

    def __init__(self, cfg: DecoderConfig, alphabet: Alphabet):
        self.cfg, self.alphabet = cfg, alphabet
        self.scorer = (Scorer(cfg.lm_alpha, cfg.lm_beta, cfg.scorer_path, alphabet)
                       if cfg.scorer_path else None)

    @property
    def name(self) -> str:
        if self.cfg.beam_width <= 0:
            return "greedy decoding"
        lm = f"scorer {self.cfg.scorer_path} (alpha {self.scorer.alpha:g}, beta {self.scorer.beta:g})" \
            if self.scorer else "no language model"
        return f"beam search of width {self.cfg.beam_width} with {lm}"

    def decode(self, logits: np.ndarray, lengths: np.ndarray) -> list[str]:
        """Logits [batch, time, classes] with valid lengths -> transcripts."""
        if self.cfg.beam_width <= 0:
            return [self.alphabet.decode(ids) for ids in greedy_decode(logits, lengths, self.alphabet.blank_id)]
        return [best.transcript for best in self.results(logits, lengths)]

    def results(self, logits: np.ndarray, lengths: np.ndarray) -> list:
        """The beam search's best ``DecodeResult`` of each row (tokens and their output frames); a
        --beam_width below 1 searches with width 1."""
        results = ctc_beam_search_decoder_batch(
            softmax(logits.astype(np.float32)), lengths, self.alphabet, max(1, self.cfg.beam_width),
            self.cfg.num_processes, self.cfg.cutoff_prob, self.cfg.cutoff_top_n, self.scorer)
        return [best[0] for best in results]
