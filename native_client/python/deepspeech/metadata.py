"""Mozilla's result classes: ``Metadata.transcripts[i]`` is a ``CandidateTranscript`` whose ``tokens``
are ``TokenMetadata`` (one per character, with the output frame and time at which it starts).

Times: ``timestep`` is the index of the model's output frame; one output frame lasts
``win_step_ms * time_stride`` milliseconds (the feature step times the stride of the convolutions),
so ``start_time = timestep * win_step_ms * time_stride / 1000`` seconds. Mozilla's models had no stride
(20 ms a frame); the default Deep Speech 2 model here has stride 3 (30 ms a frame).
"""
from __future__ import annotations

from dataclasses import dataclass

from ds_ctcdecoder.alphabet import utf8_characters


@dataclass(frozen=True)
class TokenMetadata:
    """One character of a transcript: ``text``, ``timestep`` (output frame), ``start_time`` (s)."""

    text: str
    timestep: int
    start_time: float


@dataclass(frozen=True)
class CandidateTranscript:
    """One transcript: its ``tokens`` and the decoder's ``confidence`` (log score, higher is better)."""

    tokens: tuple[TokenMetadata, ...]
    confidence: float

    def __str__(self) -> str:
        return "".join(token.text for token in self.tokens)


@dataclass(frozen=True)
class Metadata:
    """The best transcripts of a decode, best first."""

    transcripts: tuple[CandidateTranscript, ...]


def candidate_from_result(result, alphabet, frame_seconds: float, utf8: bool) -> CandidateTranscript:
    """A ``ds_ctcdecoder`` result (token ids and their output frames) -> ``CandidateTranscript``.

    In bytes (UTF-8) mode a character spans several byte tokens; it becomes one token, timed at its
    first byte. Bytes that make no valid character are dropped (``utf8_characters``), as in the text.
    """
    if utf8:
        pieces = utf8_characters(result.tokens, result.timesteps)
    else:
        pieces = [(alphabet.DecodeSingle(t), step) for t, step in zip(result.tokens, result.timesteps)]
    tokens = tuple(TokenMetadata(text, int(step), round(step * frame_seconds, 6)) for text, step in pieces)
    return CandidateTranscript(tokens, float(result.confidence))
