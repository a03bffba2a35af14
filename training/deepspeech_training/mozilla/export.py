"""Export a Mozilla-family model in Mozilla 0.9's own interface (graph version 6), for its runtime
(``libdeepspeech`` 0.9.3 and its bindings, Coqui's ``libstt`` for ``.tflite``) and for our client:

- ``output_graph.pb``: the frozen inference graph (``graph.inference_graph_def``);
- ``output_graph.pbmm`` (``--export_pbmm``): the same graph in TensorFlow's MemmappedFileSystem format,
  what Mozilla's ``convert_graphdef_memmapped_format`` wrote (``deepspeech.memmapped``);
- ``output_graph.tflite`` (``--export_tflite``, ``--export_zip``): Mozilla's TFLite graph (16 steps
  unrolled, custom AudioSpectrogram/Mfcc ops), float32 or with int8 dynamic-range weights;
- the model card and the zip, as for every family (``export.py``).

The alphabet travels as ``metadata_alphabet`` in Mozilla's binary ``Alphabet::Serialize`` encoding.
"""
from __future__ import annotations

from ds_ctcdecoder.alphabet import Alphabet, UTF8Alphabet

from ..export_tflite import ExportError
from ..features import FeatureConfig
from . import AUDIO_WIN_LEN, AUDIO_WIN_STEP, graph
from .tflite import tflite_model

TFLITE_QUANTIZE = {"none": False, "dynamic": True}


def check_features(features: FeatureConfig) -> None:
    if features.kind != "mfcc" or (features.frame_length, features.frame_step) != (AUDIO_WIN_LEN, AUDIO_WIN_STEP):
        raise ExportError(f"Mozilla's export graph computes 26 MFCC of {AUDIO_WIN_LEN}-sample windows every "
                          f"{AUDIO_WIN_STEP} samples; this model's features are {features.kind} of "
                          f"{features.frame_length}/{features.frame_step}")


def write_files(model, features: FeatureConfig, alphabet_labels: list[str], config, utf8: bool,
                write_atomic) -> list[str]:
    """Write the .pb (and .pbmm, .tflite as ``config`` asks) -> the paths written."""
    from deepspeech import memmapped

    check_features(features)
    if config.savedmodel:
        raise ExportError("--export_savedmodel: Mozilla's model family exports .pb, .pbmm and .tflite (its "
                          "runtime's formats); a SavedModel is for Deep Speech 2 models")
    if config.wants_tflite and config.quantize not in TFLITE_QUANTIZE:
        raise ExportError(f"--export_quantize {config.quantize}: Mozilla's model family exports a float32 "
                          f"(none) or a dynamic-range int8 (dynamic, as Mozilla's release) .tflite")
    weights = model.tf1_weights()
    alphabet = (UTF8Alphabet() if utf8 else Alphabet.from_labels(alphabet_labels)).Serialize()
    language = config.card.language or None
    graph_def = graph.inference_graph_def(weights, alphabet, config.beam_width, language=language)
    written = [config.path(".pb")]
    write_atomic(written[-1], graph_def.SerializeToString())
    if config.pbmm:
        written.append(config.path(".pbmm"))
        memmapped.write_memmapped(graph_def, written[-1])
    if config.wants_tflite:
        data = tflite_model(weights, alphabet, config.beam_width, quantize=TFLITE_QUANTIZE[config.quantize],
                                  language=language)
        written.append(config.path(".tflite"))
        write_atomic(written[-1], data)
    return written
