"""Mozilla DeepSpeech 0.9.3's streaming procedure (native_client/deepspeech.cc) in Python, as a test reference.

    model = PbModel(graph_def)                     # a frozen Mozilla .pb, run in TF 2.21
    model = TfliteModel(tflite_bytes)              # or a Mozilla .tflite in LiteRT
    probs = stream_probs(model, audio_int16)       # [T, C]: what libdeepspeech.so's decoder receives
    text = decode(probs, alphabet, beam_width)     # our decoder with the runtime's settings

The procedure: samples as int16 / 32768; one MFCC per full 512-sample window, step 320 (the model's
``mfccs`` subgraph); the MFCC buffer starts with 9 zero frames; each 19-frame window (shift one frame) is
appended to a batch and every 16 windows run the acoustic model with the LSTM state carried over.
Finishing: one MFCC on the leftover samples (zero-padded to 512, or, with ``stale_window``, padded with
what the previous window left in the 512-sample input tensor, as 0.9.3's TFLite backend does), 9 zero
frames, then the final partial batch with ``input_lengths`` = its size.
"""
from __future__ import annotations

import numpy as np

WIN_LEN, WIN_STEP, N_CONTEXT, N_STEPS, N_INPUT = 512, 320, 9, 16, 26


class PbModel:
    """A frozen Mozilla .pb GraphDef in a tf.compat.v1 Session: ``mfcc`` and ``infer`` like the runtime's."""

    def __init__(self, graph_def):
        import tensorflow as tf

        self.graph = tf.Graph()
        with self.graph.as_default():  # on a copy: import_graph_def adds the default attributes to its input
            tf.compat.v1.import_graph_def(type(graph_def).FromString(graph_def.SerializeToString()), name="")
        self.session = tf.compat.v1.Session(graph=self.graph)
        self.n_hidden = int(self.graph.get_tensor_by_name("previous_state_c:0").shape[1])

    def run(self, fetches: list[str], feeds: dict):
        return self.session.run([f"{name}:0" for name in fetches], {f"{k}:0": v for k, v in feeds.items()})

    def mfcc(self, window: np.ndarray) -> np.ndarray:
        """MFCC [26] of one 512-sample float window."""
        [mfccs] = self.run(["mfccs"], {"input_samples": window.astype(np.float32)})
        return mfccs[0]

    def infer(self, windows: np.ndarray, state_c, state_h):
        """``windows`` [k <= 16, 19, 26] -> (probabilities [k, C], new c, new h)."""
        n = len(windows)
        batch = np.zeros((1, N_STEPS, 2 * N_CONTEXT + 1, N_INPUT), np.float32)
        batch[0, :n] = windows
        probs, c, h = self.run(["logits", "new_state_c", "new_state_h"],
                               {"input_node": batch, "input_lengths": np.array([n], np.int32),
                                "previous_state_c": state_c, "previous_state_h": state_h})
        return probs[:n, 0], c, h


class TfliteModel:
    """A Mozilla .tflite (bytes) in LiteRT's Interpreter, with PbModel's ``mfcc`` and ``infer``. Each call
    runs the whole graph (LiteRT's Python API cannot run a part of it as Mozilla's loader does)."""

    def __init__(self, data: bytes):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        # without XNNPACK, whose dynamic-range (hybrid) layers quantize their input differently from
        # TFLite's builtin kernel that Mozilla's and Coqui's runtimes run
        self.interpreter = Interpreter(model_content=bytes(data),
                                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter.allocate_tensors()
        self.inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
        self.outputs = {d["name"]: d for d in self.interpreter.get_output_details()}
        self.n_hidden = int(self.inputs["previous_state_c"]["shape"][1])
        self.feeds = {name: np.zeros(d["shape"], d["dtype"]) for name, d in self.inputs.items()}

    def run(self, fetches: list[str], feeds: dict):
        for name, value in {**self.feeds, **feeds}.items():
            self.interpreter.set_tensor(self.inputs[name]["index"], np.asarray(value, self.inputs[name]["dtype"]))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(self.outputs[name]["index"]) for name in fetches]

    def mfcc(self, window: np.ndarray) -> np.ndarray:
        [mfccs] = self.run(["mfccs"], {"input_samples": window})
        return mfccs[0]

    def infer(self, windows: np.ndarray, state_c, state_h):
        """As PbModel.infer: the LSTM runs all 16 steps, the rows past ``len(windows)`` are dropped."""
        n = len(windows)
        batch = np.zeros((1, N_STEPS, 2 * N_CONTEXT + 1, N_INPUT), np.float32)
        batch[0, :n] = windows
        probs, c, h = self.run(["logits", "new_state_c", "new_state_h"],
                               {"input_node": batch, "previous_state_c": state_c, "previous_state_h": state_h})
        return probs[:n], c, h


def stream_mfccs(model, audio: np.ndarray, stale_window: bool = False) -> np.ndarray:
    """The MFCC frames [F, 26] the runtime computes for int16 ``audio``, the finishing frame included."""
    samples = np.asarray(audio, np.int16).astype(np.float32) * np.float32(1.0 / 32768)
    frames, tensor = [], np.zeros(WIN_LEN, np.float32)
    start = 0
    while start + WIN_LEN <= len(samples):
        tensor = samples[start:start + WIN_LEN].copy()
        frames.append(model.mfcc(tensor))
        start += WIN_STEP
    rest = samples[start:]
    last = tensor.copy() if stale_window else np.zeros(WIN_LEN, np.float32)
    last[:len(rest)] = rest
    frames.append(model.mfcc(last))
    return np.array(frames, np.float32)


def context_windows(mfccs: np.ndarray) -> np.ndarray:
    """[F, 26] -> [F, 19, 26]: each frame with 9 frames either side, zeros past both ends."""
    padded = np.concatenate([np.zeros((N_CONTEXT, N_INPUT), np.float32), mfccs,
                             np.zeros((N_CONTEXT, N_INPUT), np.float32)])
    return np.stack([padded[t:t + 2 * N_CONTEXT + 1] for t in range(len(mfccs))])


def stream_probs(model, audio: np.ndarray, stale_window: bool = False) -> np.ndarray:
    """The probabilities [T, C] Mozilla's streaming gives its decoder for int16 ``audio``."""
    windows = context_windows(stream_mfccs(model, audio, stale_window))
    c = h = np.zeros((1, model.n_hidden), np.float32)
    out = []
    for start in range(0, len(windows), N_STEPS):
        probs, c, h = model.infer(windows[start:start + N_STEPS], c, h)
        out.append(probs)
    return np.concatenate(out)


def decode(probs: np.ndarray, alphabet, beam_width: int) -> str:
    """Our decoder with the runtime's settings (cutoff_prob 1.0, cutoff_top_n 40, no scorer)."""
    from ds_ctcdecoder import ctc_beam_search_decoder

    [best] = ctc_beam_search_decoder(probs.astype(np.float64), alphabet, beam_width, cutoff_prob=1.0,
                                     cutoff_top_n=40)
    return best.transcript
