"""Replay graphs: a stored probability matrix [T, C] in Mozilla DeepSpeech 0.9's export interface.

Mozilla's runtime (util/mozilla_runtime.py) then decodes exactly the probabilities our decoder gets,
with its own CTC beam search and scorer: the graph's ``logits`` output ignores the audio features and
returns the matrix's rows in order, 16 per call.

    write_replay_pb(probs, alphabet, "replay.pb")          # TensorFlow build (libdeepspeech.so)
    audio = replay_audio(len(probs))                       # int16 silence giving exactly T timesteps
    Runtime("deepspeech").model("replay.pb").stt(audio)

Graph (version 6 interface, only ops Mozilla's TensorFlow build registers):
  metadata_* consts; input_samples [512] -> ExpandDims -> AudioSpectrogram -> Mfcc -> Reshape -> mfccs;
  input_node [1,16,19,26], input_lengths [1], previous_state_c/h [1,1] placeholders.
  The frame counter travels in the LSTM state: rows = Minimum(MatMul(previous_state_c, ones[1,16])
  BiasAdd range(16), T) -> Cast -> GatherNd over the matrix plus one blank row -> logits [16,1,C];
  new_state_c = previous_state_c BiasAdd input_lengths, new_state_h = previous_state_h.
Attributes at their default values are removed from every node, so that TensorFlow 2.3 (inside
libdeepspeech.so 0.9.3) does not meet attributes it does not know.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "training"))

from deepspeech_training.mozilla import (AUDIO_WIN_LEN, AUDIO_WIN_STEP, GRAPH_VERSION, N_CONTEXT,  # noqa: E402
                                         N_INPUT, N_STEPS, SAMPLE_RATE, WIN_LEN_MS, WIN_STEP_MS)
from deepspeech_training.mozilla.graph import strip_default_attrs  # noqa: E402


def replay_audio(frames: int) -> np.ndarray:
    """int16 silence for which Mozilla's runtime computes exactly ``frames`` timesteps.

    The runtime computes one MFCC per full 512-sample window (step 320), then, when the stream
    finishes, one more on the (zero-padded) rest of its buffer, which always holds samples: so N
    samples give 1 + (N-512)//320 + 1 timesteps for N >= 512 and 1 for 0 < N < 512.
    """
    if frames < 1:
        raise ValueError(f"a replay needs at least one frame, got {frames}")
    n = AUDIO_WIN_LEN // 2 if frames == 1 else AUDIO_WIN_LEN + AUDIO_WIN_STEP * (frames - 2)
    return np.zeros(n, dtype=np.int16)


def padded_probs(probs: np.ndarray) -> np.ndarray:
    """The matrix plus one row that is (almost) certainly blank, for frames past its end."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[0] < 1 or probs.shape[1] < 2:
        raise ValueError(f"expected probabilities [T, C] with T >= 1 and C >= 2, got {probs.shape}")
    blank = np.full((1, probs.shape[1]), 1e-6, dtype=np.float32)
    blank[0, -1] = 1.0 - 1e-6 * (probs.shape[1] - 1)
    return np.concatenate([probs, blank])


_TEMPLATES = {}


def build_replay_graph_def(probs: np.ndarray, alphabet, beam_width: int = 500):
    """The replay GraphDef: a template graph per (alphabet, beam width), with this matrix's consts."""
    from tensorflow.core.framework import graph_pb2
    from tensorflow.python.framework import tensor_util

    if len(alphabet) + 1 != np.shape(probs)[1]:
        raise ValueError(f"the alphabet has {len(alphabet)} labels, so {len(alphabet) + 1} classes; "
                         f"the matrix has {np.shape(probs)[1]}")
    table = padded_probs(probs)
    key = (alphabet.Serialize(), beam_width)
    if key not in _TEMPLATES:
        _TEMPLATES[key] = _template(table, alphabet, beam_width).SerializeToString()
    graph_def = graph_pb2.GraphDef.FromString(_TEMPLATES[key])
    consts = {"replay_probs": table, "replay_last_row": np.float32(len(table) - 1)}
    for node in graph_def.node:
        if node.name in consts:
            node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(consts[node.name]))
    return graph_def


def _template(table: np.ndarray, alphabet, beam_width: int):
    """The replay graph in tf.compat.v1 graph mode, default attributes stripped."""
    import tensorflow as tf

    raw = tf.raw_ops
    graph = tf.Graph()
    with graph.as_default():
        v1 = tf.compat.v1
        for name, value in (("version", GRAPH_VERSION), ("sample_rate", SAMPLE_RATE),
                            ("feature_win_len", WIN_LEN_MS), ("feature_win_step", WIN_STEP_MS),
                            ("beam_width", beam_width)):
            tf.constant([value], dtype=tf.int32, name=f"metadata_{name}")
        tf.constant([alphabet.Serialize()], dtype=tf.string, name="metadata_alphabet")

        samples = v1.placeholder(tf.float32, [AUDIO_WIN_LEN], name="input_samples")
        spectrogram = raw.AudioSpectrogram(input=raw.ExpandDims(input=samples, axis=tf.constant(-1)),
                                           window_size=AUDIO_WIN_LEN, stride=AUDIO_WIN_STEP,
                                           magnitude_squared=True)
        mfccs = raw.Mfcc(spectrogram=spectrogram, sample_rate=tf.constant(SAMPLE_RATE),
                         upper_frequency_limit=SAMPLE_RATE / 2, lower_frequency_limit=20,
                         filterbank_channel_count=40, dct_coefficient_count=N_INPUT)
        raw.Identity(input=raw.Reshape(tensor=mfccs, shape=tf.constant([-1, N_INPUT])), name="mfccs")

        v1.placeholder(tf.float32, [1, N_STEPS, 2 * N_CONTEXT + 1, N_INPUT], name="input_node")
        lengths = v1.placeholder(tf.int32, [1], name="input_lengths")
        state_c = v1.placeholder(tf.float32, [1, 1], name="previous_state_c")
        state_h = v1.placeholder(tf.float32, [1, 1], name="previous_state_h")

        start = raw.MatMul(a=state_c, b=tf.constant(np.ones((1, N_STEPS), np.float32)))
        rows = raw.BiasAdd(value=start, bias=tf.constant(np.arange(N_STEPS, dtype=np.float32)))
        rows = raw.Minimum(x=rows, y=tf.constant(float(len(table) - 1), name="replay_last_row"))
        indices = raw.Reshape(tensor=raw.Cast(x=rows, DstT=tf.int32), shape=tf.constant([N_STEPS, 1]))
        gathered = raw.GatherNd(params=tf.constant(table, name="replay_probs"), indices=indices)
        raw.Identity(input=raw.Reshape(tensor=gathered, shape=tf.constant([N_STEPS, 1, table.shape[1]])),
                     name="logits")
        raw.Identity(input=raw.BiasAdd(value=state_c, bias=raw.Cast(x=lengths, DstT=tf.float32)),
                     name="new_state_c")
        raw.Identity(input=state_h, name="new_state_h")
    graph_def = graph.as_graph_def()
    strip_default_attrs(graph_def)
    return graph_def


def write_replay_pb(probs: np.ndarray, alphabet, path, beam_width: int = 500) -> None:
    """Write the replay graph of ``probs`` [T, C] as a frozen GraphDef .pb for libdeepspeech.so."""
    graph_def = build_replay_graph_def(probs, alphabet, beam_width)
    with open(path, "wb") as f:
        f.write(graph_def.SerializeToString())
