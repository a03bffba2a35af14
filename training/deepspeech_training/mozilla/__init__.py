"""Mozilla DeepSpeech 0.9's model family (also Coqui STT 1.x's): its geometry, names and constants.

This package is the one place that knows Mozilla's model: its features (26 MFCC), its layers
(``model.py``), its TF1 release checkpoints (``checkpoint.py``) and its export interface (``graph.py``:
the frozen ``.pb``, also written as TensorFlow's memory-mapped ``.pbmm``; ``tflite.py``; ``export.py``
writes the files). Everything is keyed on the TF1 variable names below (``WEIGHT_NAMES``): the Keras model gives and takes its
weights as a ``{name: numpy array}`` dict in exactly the layout of Mozilla's checkpoints.

Facts: ../shared/reference/mozilla-release-format.md (Mozilla v0.9.3, Coqui v1.4.0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

FAMILY = "mozilla"

# features (Mozilla's util/feeding.py audio_to_features)
SAMPLE_RATE = 16000
WIN_LEN_MS, WIN_STEP_MS = 32, 20  # 512 / 320 samples
AUDIO_WIN_LEN, AUDIO_WIN_STEP = SAMPLE_RATE * WIN_LEN_MS // 1000, SAMPLE_RATE * WIN_STEP_MS // 1000
N_INPUT = 26  # MFCC coefficients
N_CONTEXT = 9  # frames each side
MFCC_UPPER_HZ, MFCC_LOWER_HZ, MFCC_CHANNELS = 8000.0, 20.0, 40
# export interface
N_STEPS = 16
GRAPH_VERSION = 6
DEFAULT_BEAM_WIDTH = 500
RELU_CLIP = 20.0

LSTM_SCOPE = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell"
LSTM_KERNEL, LSTM_BIAS = f"{LSTM_SCOPE}/kernel", f"{LSTM_SCOPE}/bias"
DENSE_LAYERS = ("layer_1", "layer_2", "layer_3", "layer_5", "layer_6")
# in the order of the model, input to output
WEIGHT_NAMES = ("layer_1/weights", "layer_1/bias", "layer_2/weights", "layer_2/bias",
                "layer_3/weights", "layer_3/bias", LSTM_KERNEL, LSTM_BIAS,
                "layer_5/weights", "layer_5/bias", "layer_6/weights", "layer_6/bias")
# cuDNN-trained release checkpoints also hold these (ignored on import)
OPAQUE_PREFIX = "cudnn_lstm/opaque_kernel"


class GeometryError(ValueError):
    """Tensors that are not Mozilla's model; the message names the tensor and both shapes."""


@dataclass(frozen=True)
class MozillaGeometry:
    """Everything that sizes the model; derived from tensor shapes, never from flags."""

    n_hidden: int = 2048
    num_classes: int = 29  # alphabet + blank (last)
    n_input: int = N_INPUT
    n_context: int = N_CONTEXT

    @property
    def window(self) -> int:
        return 2 * self.n_context + 1

    @property
    def input_width(self) -> int:
        return self.window * self.n_input  # 494: (context offset -9..+9) major, MFCC coefficient minor

    def shapes(self) -> dict[str, tuple[int, ...]]:
        n, c = self.n_hidden, self.num_classes
        return {"layer_1/weights": (self.input_width, n), "layer_1/bias": (n,),
                "layer_2/weights": (n, n), "layer_2/bias": (n,),
                "layer_3/weights": (n, n), "layer_3/bias": (n,),
                LSTM_KERNEL: (2 * n, 4 * n), LSTM_BIAS: (4 * n,),  # rows x then h; gates i, c, f, o
                "layer_5/weights": (n, n), "layer_5/bias": (n,),
                "layer_6/weights": (n, c), "layer_6/bias": (c,)}


def geometry_from_shapes(shapes: Mapping[str, Sequence[int]], source: str = "the checkpoint") -> MozillaGeometry:
    """The geometry of tensors ``{name: shape}`` (a checkpoint's, a graph's), checked to be complete and
    consistent: raises GeometryError naming ``source``, the tensor and both shapes."""
    missing = [name for name in WEIGHT_NAMES if name not in shapes]
    if missing:
        raise GeometryError(f"{source}: not Mozilla's model, missing tensor(s) {', '.join(missing)}")
    l1 = tuple(shapes["layer_1/weights"])
    if len(l1) != 2 or l1[0] % N_INPUT or (l1[0] // N_INPUT) % 2 != 1:
        raise GeometryError(f"{source}: layer_1/weights has shape {list(l1)}, expected "
                            f"[{N_INPUT} x (2 x context + 1), n_hidden]")
    geometry = MozillaGeometry(n_hidden=l1[1], num_classes=int(tuple(shapes["layer_6/bias"])[0]),
                               n_context=(l1[0] // N_INPUT - 1) // 2)
    for name, expected in geometry.shapes().items():
        if tuple(shapes[name]) != expected:
            raise GeometryError(f"{source}: {name} has shape {list(shapes[name])}, expected {list(expected)} "
                                f"(n_hidden {geometry.n_hidden}, {geometry.num_classes} classes)")
    return geometry
