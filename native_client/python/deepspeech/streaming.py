"""The streaming driver: the one caller of an exported ``step`` function (numpy only).

A unidirectional model is exported as ``step(features, position, valid_frames, state) ->
(probs, new_state)``; feeding an utterance's feature frames through this driver, in pieces of any
size, gives the full-sequence model's probabilities (to float rounding), and the same number of
frames: ceil(T / time_stride) for T feature frames.

Bookkeeping (the export's ``streaming`` metadata supplies the numbers):

- Output frames are numbered by the convolution stack's output, 0, 1, ... Step k has
  ``position`` P = k * n_steps and computes the conv stack's frames P .. P + n_steps - 1.
- ``features`` [1, window_frames, F] are the raw feature frames P * time_stride - window_offset
  onwards (the receptive field of those n_steps frames). Frames before 0 or after the end of the
  stream are zeros; the model masks them anyway.
- ``valid_frames`` is the number of feature frames in the utterance. While the stream is open it is
  ``UNKNOWN_LENGTH`` (2**30): a step only runs once its whole window has arrived, and then every frame
  it reads is real, so the result is the same as with the true length. ``finish()`` passes the true
  length so that the last steps mask what lies beyond it, as the full model's padding does.
- ``state`` [1, state_size] packs each RNN layer's state (LSTM: h then c) and, with a lookahead of
  tau, the last tau RNN output frames; it starts at zeros and is carried from step to step.
- ``probs`` [1, n_steps, C] are the output frames P - lookahead .. P + n_steps - 1 - lookahead
  (the lookahead needs tau future frames, so outputs are delayed by tau). Frames before 0 and from
  ceil(T / time_stride) on are dropped.
"""
from __future__ import annotations

import numpy as np

UNKNOWN_LENGTH = 2 ** 30


class StreamingDriver:
    """Runs ``step`` over a stream of feature frames; ``feed`` returns the frames that became final."""

    def __init__(self, step, streaming: dict, n_features: int | None = None):
        self._step = step
        self.n_steps = int(streaming["n_steps"])
        self.window_frames = int(streaming["window_frames"])
        self.time_stride = int(streaming["time_stride"])
        self.window_offset = int(streaming["window_offset"])
        self.lookahead = int(streaming["lookahead"])
        self.state_size = int(streaming["state_size"])
        self.num_classes = int(streaming["num_classes"])
        self.n_features = int(n_features if n_features is not None else streaming["n_features"])
        self.reset()

    def reset(self) -> None:
        """Start a new utterance."""
        self._buffer = np.zeros([0, self.n_features], np.float32)
        self._buffer_start = 0  # stream index of self._buffer[0]
        self._received = 0
        self._position = 0  # the next step's P
        self._emitted = 0  # the next output frame to return
        self._state = np.zeros([1, self.state_size], np.float32)
        self._finished = False

    def feed(self, frames) -> np.ndarray:
        """Append feature frames [k, F] -> probabilities [m, C] of the output frames now final."""
        self.append(frames)
        return self._run_pending()

    def finish(self) -> np.ndarray:
        """End the stream -> probabilities [rest, C] of the remaining output frames."""
        self.close()
        return self._run_pending()

    # The same bookkeeping for a caller that runs ``step`` itself, batching several streams'
    # steps into one call (the streaming server): ``append``/``close``, then while ``pending()``
    # gives a step's inputs, run it and hand its row of outputs to ``advance``.

    def append(self, frames) -> None:
        """Append feature frames [k, F] without running any step."""
        if self._finished:
            raise RuntimeError("the stream is finished: call reset() to start another")
        frames = np.asarray(frames, np.float32).reshape(-1, self.n_features)
        self._buffer = np.concatenate([self._buffer, frames])
        self._received += len(frames)

    def close(self) -> None:
        """No more frames: the remaining steps see the true length."""
        if self._finished:
            raise RuntimeError("the stream is already finished")
        self._finished = True

    @property
    def state(self) -> np.ndarray:
        """The recurrent state [1, N] the next step starts from."""
        return self._state

    def pending(self) -> tuple[np.ndarray, int, int] | None:
        """The next step's inputs (window [W, F], position, valid_frames) when it can run now, else
        None (its window is not complete yet, or a closed stream has given all its frames)."""
        if self._finished:
            if self._emitted >= self._total():
                return None
            return self._window()[0], self._position, self._received
        if self._window_start() + self.window_frames <= self._received:
            return self._window()[0], self._position, UNKNOWN_LENGTH
        return None

    def advance(self, probs, new_state) -> np.ndarray:
        """The outputs of the step ``pending()`` gave (probs [n_steps, C], new_state [N], one row of a
        batch) -> probabilities [m, C] of the output frames that became final."""
        self._state = np.asarray(new_state, np.float32).reshape(1, self.state_size)
        first = self._position - self.lookahead  # the output frame of probs[0]
        self._position += self.n_steps
        end = first + self.n_steps if not self._finished else min(first + self.n_steps, self._total())
        keep = np.asarray(probs, np.float32).reshape(self.n_steps, -1)[
            max(self._emitted - first, 0):max(end - first, 0)]
        self._emitted += len(keep)
        self._drop_consumed()
        return keep

    def _total(self) -> int:
        return -(-self._received // self.time_stride)

    def run(self, frames) -> np.ndarray:
        """One-shot: all feature frames [T, F] of an utterance -> probabilities [T', C]."""
        self.reset()
        probs = np.concatenate([self.feed(frames), self.finish()])
        self.reset()
        return probs

    def _window_start(self) -> int:
        return self._position * self.time_stride - self.window_offset

    def _window(self) -> np.ndarray:
        """The next step's features [1, W, F], zeros outside the frames received."""
        window = np.zeros([self.window_frames, self.n_features], np.float32)
        start = self._window_start()
        lo, hi = max(start, self._buffer_start), min(start + self.window_frames, self._received)
        if hi > lo:
            window[lo - start:hi - start] = self._buffer[lo - self._buffer_start:hi - self._buffer_start]
        return window[None]

    def _run_pending(self) -> np.ndarray:
        out = []
        while (inputs := self.pending()) is not None:
            window, position, valid = inputs
            result = self._step(window[None], np.array([position], np.int32), np.array([valid], np.int32),
                                self._state)
            probs, state = (result["probs"], result["new_state"]) if isinstance(result, dict) else result
            out.append(self.advance(np.asarray(probs)[0], state))
        return self._join(out)

    def _drop_consumed(self) -> None:
        """Forget the frames no later window reads."""
        drop = min(self._window_start(), self._received) - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start += drop

    def _join(self, parts) -> np.ndarray:
        if not parts:
            return np.zeros([0, self.num_classes], np.float32)
        return np.concatenate(parts)
