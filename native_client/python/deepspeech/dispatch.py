"""Batch Dispatch (Deep Speech 2, section 7): one model worker steps many streams in one batched call.

The streaming server (``server.py``) keeps a ``Recognition`` per connected stream and hands its audio
to a ``Dispatcher``. The dispatcher's one model worker thread repeats: take the audio that arrived
(resample it, compute its feature frames), then run the streaming ``step`` of every stream whose next
window is complete as ONE call, the streams' rows stacked on the batch axis (at most ``max_batch``;
the rest wait for the next call). The rule is eager: a batch starts as soon as the previous one ends,
with whatever is ready, without waiting for a timer. A stream with several windows ready gives one
row a batch (its steps are sequential) and goes to the back of the queue.

The beam search of each stream (``ds_ctcdecoder.DecoderState``) runs on a second thread, the decoder
thread, advanced by the new output frames only; it answers each audio message with the partial
transcript once that message's windows are decoded, and gives the final result after the end of
the stream. Neither thread is the event loop's. The decoder's work is batched as the model's: one
decoder job per model call (and one for the audio messages answered without a call), and the job's
answers reach the event loop in one ``post`` (one wake-up of the loop, not one a message).
"""
from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .audio import from_int16, resample
from .streaming import StreamingDriver

EOF = object()  # the end-of-stream item of a Recognition's inbox, and the last message delivered
FINAL = object()  # a decoder job's answer: the final result


class NotStreamable(ValueError):
    """A model the server cannot stream (a bidirectional 'forward' export, a Mozilla-family model)."""


def streaming_parts(model, path: str):
    """``deepspeech.Model`` -> its (AcousticModel, runtime) when it exports ``step``."""
    from .acoustic import AcousticModel

    acoustic = model._impl
    if not isinstance(acoustic, AcousticModel):
        raise NotStreamable(f"{path}: a Mozilla/Coqui-interface model; the server streams only this "
                            f"trainer's unidirectional exports")
    if not acoustic.streaming:
        raise NotStreamable(f"{path}: a bidirectional ('forward') model is not streamable; export a "
                            f"unidirectional model (--nobidirectional) for the server")
    return acoustic, acoustic.runtime


class Recognition:
    """One stream's state. The event loop only calls ``Dispatcher.submit``/``drop`` with it; the
    model worker owns ``frames``, ``driver`` and the resampler; the decoder thread owns ``search``."""

    def __init__(self, stream_id: int, acoustic, decoding, sample_rate: int, words: bool,
                 max_alternatives: int, deliver):
        self.id, self.sample_rate, self.words = stream_id, sample_rate, words
        self.max_alternatives = max_alternatives
        self.deliver = deliver  # deliver(message), on the event loop: the stream's answers, EOF last
        self._acoustic, self._decoding = acoustic, decoding
        self.inbox: list = []  # PCM bytes and EOF, guarded by the dispatcher's lock
        self.frames = acoustic.frame_stream()
        self.driver = StreamingDriver(None, acoustic.metadata["streaming"], acoustic.framing.n_features)
        self.search = decoding.state()
        self.token_probs: list[np.ndarray] = []  # each decoded output frame's label probabilities
        self._partial = (-1, "")  # (frames decoded, their best transcript): the last partial
        self.received_in = 0  # samples at the client's rate
        self.resampled_out = 0  # samples at the model's rate
        self.closed = False  # EOF taken from the inbox
        self.owed = 0  # audio messages taken but not answered yet
        self.queued = False  # in the dispatcher's ready queue
        self.dropped = False
        self.steps = 0
        self.eof_time: float | None = None
        self.final_latency: float | None = None
        self.error: str | None = None

    def set_decoding(self, decoding) -> None:
        """Other decoder settings (hot words), before the stream's first frame is decoded."""
        self._decoding, self.search, self._partial = decoding, decoding.state(), (-1, "")

    # --- model worker
    def take(self, item) -> None:
        """One inbox item: PCM bytes -> feature frames into the driver; EOF -> the last frames."""
        if item is EOF:
            self.driver.append(self.frames.finish())
            self.driver.close()
            self.closed = True
            return
        samples = np.frombuffer(item, "<i2")
        self.driver.append(self.frames.feed(self._to_model_rate(from_int16(samples))))
        self.owed += 1

    def _to_model_rate(self, audio: np.ndarray) -> np.ndarray:
        """Chunk by chunk; the counts are kept over the stream so that no sample drifts."""
        rate = self._acoustic.sample_rate
        if self.sample_rate == rate:
            return audio
        self.received_in += len(audio)
        target = round(self.received_in * rate / self.sample_rate)
        count, self.resampled_out = target - self.resampled_out, target
        if count <= 0 or not len(audio):
            return np.zeros(0, np.float32)
        return resample(audio, len(audio), count)

    # --- decoder thread
    def decode_frames(self, probs: np.ndarray) -> None:
        if len(probs):
            self.search.next(probs)
            if self.words:
                self.token_probs.extend(probs)

    def partials(self, count: int) -> list:
        """The partial result ``count`` times (once per audio message answered)."""
        if self._partial[0] != self.search.frames:  # new frames since the last partial
            self._partial = (self.search.frames, self.search.transcript())  # settled text not walked again
        return [{"partial": self._partial[1]}] * count

    def final(self) -> list:
        """The final result, then EOF."""
        metadata = self._decoding.metadata(self.search, max(1, self.max_alternatives))
        if self.max_alternatives > 0:
            message = {"alternatives": [self._result(c, "confidence") for c in metadata.transcripts]}
        else:
            message = self._result(metadata.transcripts[0], None)
        if self.eof_time is not None:
            self.final_latency = time.monotonic() - self.eof_time
        return [message, EOF]

    def _result(self, candidate, confidence_key: str | None) -> dict:
        out = {"text": str(candidate)}
        if confidence_key:
            out[confidence_key] = candidate.confidence
        if self.words:
            out["result"] = word_timings(candidate, self._acoustic.frame_seconds, self.token_probs,
                                         self._acoustic.alphabet)
        return out


def word_timings(candidate, frame_seconds: float, frame_probs=None, alphabet=None) -> list[dict]:
    """Vosk's word list: each word's start (its first character's frame), end (one frame after its
    last character's) and conf: the geometric mean of the CTC posteriors of the word's characters (in
    bytes mode: of their first bytes) at the frames the search placed them (1.0 without
    ``frame_probs``, the output frames' probabilities, and the ``alphabet``)."""
    words, current = [], []
    for token in list(candidate.tokens) + [None]:
        if token is None or token.text == " ":
            if current:
                words.append({"word": "".join(t.text for t in current),
                              "start": round(current[0].timestep * frame_seconds, 3),
                              "end": round((current[-1].timestep + 1) * frame_seconds, 3),
                              "conf": _confidence(current, frame_probs, alphabet)})
            current = []
        else:
            current.append(token)
    return words


def _confidence(tokens, frame_probs, alphabet) -> float:
    if not frame_probs or alphabet is None:
        return 1.0
    logs = [np.log(max(float(frame_probs[t.timestep][alphabet.encode(t.text)[0]]), 1e-30)) for t in tokens
            if t.timestep < len(frame_probs)]
    return round(float(np.exp(np.mean(logs))), 4) if logs else 1.0


class Dispatcher:
    """The model worker thread and the decoder thread (see the module docstring). ``post(answers)``,
    thread-safe, hands a list of (recognition, message) to the event loop, which delivers them in order;
    ``on_error(recognition)`` is called (on either thread) for a stream whose model step or search failed."""

    def __init__(self, runtime, max_batch: int, post, on_error=None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.runtime, self.max_batch = runtime, max_batch
        self._batched = runtime.batched
        self._post, self._on_error = post, on_error
        self._cond = threading.Condition()
        self._dirty: dict[int, Recognition] = {}  # streams with new inbox items
        self._ready: collections.deque[Recognition] = collections.deque()  # streams with a step to run
        self._stopping = False
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="decoder")
        self._worker = threading.Thread(target=self._run, name="model-worker", daemon=True)
        self.batch_sizes: collections.Counter = collections.Counter()

    def start(self) -> None:
        self._worker.start()

    def warm_up(self, streaming: dict, n_features: int) -> None:
        """One ``step`` of zeros at batch 1 and at ``max_batch`` before serving: the first call of a
        TensorFlow graph initializes it (0.5 s measured), which would otherwise land on the first streams."""
        for batch in sorted({1, self.max_batch if self._batched else 1}):
            window = np.zeros([streaming["window_frames"], n_features], np.float32)
            self._step([(window, 0, 1)] * batch, [np.zeros([1, streaming["state_size"]], np.float32)] * batch)

    def stop(self) -> None:
        """Finish what was submitted, then end both threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._worker.join()
        self._decoder.shutdown(wait=True)

    # --- event loop side
    def submit(self, recognition: Recognition, item) -> None:
        """PCM bytes (16-bit little-endian, the stream's rate) or EOF."""
        if item is EOF:
            recognition.eof_time = time.monotonic()
        with self._cond:
            recognition.inbox.append(item)
            self._dirty[recognition.id] = recognition
            self._cond.notify()

    def drop(self, recognition: Recognition) -> None:
        """Forget a stream (its client left or broke the protocol)."""
        recognition.dropped = True
        with self._cond:
            recognition.inbox.clear()
            self._dirty.pop(recognition.id, None)

    # --- model worker
    def _run(self) -> None:
        while self._wait():
            self._to_decoder(self._take_inboxes())
            self._to_decoder(self._run_batch())

    def _wait(self) -> bool:
        """Until there is work -> False once stopping with nothing left."""
        with self._cond:
            while not self._dirty and not self._ready and not self._stopping:
                self._cond.wait()
            return not (self._stopping and not self._dirty and not self._ready)

    def _take_inboxes(self) -> list:
        """Every stream's new inbox items (its own locals: no stream outlives its call here) -> the
        decoder's work for the streams that have no step to wait for."""
        with self._cond:
            dirty, self._dirty = list(self._dirty.values()), {}
            taken = [(r, r.inbox[:]) for r in dirty]
            for r in dirty:
                r.inbox.clear()
        work: list = []
        for recognition, items in taken:
            try:
                for item in items:
                    recognition.take(item)
            except Exception as err:  # noqa: BLE001 (a failure of one stream ends that stream only)
                self._fail([recognition], err)
                continue
            if not recognition.queued:
                self._queue_or_settle(recognition, None, work)
        return work

    def _queue_or_settle(self, recognition: Recognition, frames, work: list) -> None:
        """Queue the stream for its next step, or give the decoder what it owes: (recognition, new
        output frames or None, FINAL / the number of partials / None) into ``work``."""
        if recognition.dropped:
            return
        answer = None
        if recognition.driver.pending() is not None:
            recognition.queued = True
            self._ready.append(recognition)
        elif recognition.closed:
            answer = FINAL
        elif recognition.owed:
            answer, recognition.owed = recognition.owed, 0
        if answer is not None or (frames is not None and len(frames)):
            work.append((recognition, frames, answer))

    def _run_batch(self) -> list:
        """One model call for the ready streams (at most max_batch) -> the decoder's work."""
        batch = []
        while self._ready and len(batch) < self.max_batch:
            recognition = self._ready.popleft()
            recognition.queued = False
            if not recognition.dropped:
                batch.append(recognition)
        if not batch:
            return []
        inputs = [r.driver.pending() for r in batch]
        try:
            probs, states = self._step(inputs, [r.driver.state for r in batch])
        except Exception as err:  # noqa: BLE001
            self._fail(batch, err)
            return []
        self.batch_sizes[len(batch)] += 1
        work: list = []
        for i, recognition in enumerate(batch):
            recognition.steps += 1
            self._queue_or_settle(recognition, recognition.driver.advance(probs[i], states[i]), work)
        return work

    def _to_decoder(self, work: list) -> None:
        if work:
            self._decoder.submit(self._decode, work)

    # --- decoder thread
    def _decode(self, work: list) -> None:
        """One job: each stream's new frames into its search, then its answers; all answers in one post."""
        answers = []
        for recognition, frames, answer in work:
            if recognition.dropped:
                continue
            try:
                if frames is not None:
                    recognition.decode_frames(frames)
                if answer is FINAL:
                    answers.extend((recognition, m) for m in recognition.final())
                elif answer:
                    answers.extend((recognition, m) for m in recognition.partials(answer))
            except Exception as err:  # noqa: BLE001
                self._fail([recognition], err)
        if answers:
            self._post(answers)

    def _step(self, inputs, states):
        features = np.stack([window for window, _, _ in inputs])
        position = np.array([p for _, p, _ in inputs], np.int32)
        valid = np.array([v for _, _, v in inputs], np.int32)
        state = np.concatenate(states)
        if self._batched or len(inputs) == 1:
            out = self.runtime.step(features, position, valid, state)
            return np.asarray(out["probs"]), np.asarray(out["new_state"])
        outs = [self.runtime.step(features[i:i + 1], position[i:i + 1], valid[i:i + 1], state[i:i + 1])
                for i in range(len(inputs))]  # an export with a fixed batch of 1
        return (np.concatenate([np.asarray(o["probs"]) for o in outs]),
                np.concatenate([np.asarray(o["new_state"]) for o in outs]))

    def _fail(self, recognitions, err: Exception) -> None:
        for recognition in recognitions:
            recognition.error = f"{type(err).__name__}: {err}"
            recognition.dropped = True
            if self._on_error is not None:
                self._on_error(recognition)
