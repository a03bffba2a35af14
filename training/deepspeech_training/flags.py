"""absl flags with Mozilla DeepSpeech 0.9 names; read only by entry points and turned into configs."""
from __future__ import annotations

import os
import re

from absl import flags
from ds_ctcdecoder.alphabet import Alphabet, AlphabetError, UTF8Alphabet

from .augment import parse_augmentations
from .decoding import DecoderConfig
from .export import ExportConfig, ModelCard
from .features import FeatureConfig
from .model import ConvSpec, ModelConfig
from .train import TrainConfig
from .util.log import log

FLAGS = flags.FLAGS


def _default_dir(kind: str) -> str:
    base = os.environ.get("XDG_DATA_HOME", os.path.expanduser("~/.local/share"))
    return os.path.join(base, "deepspeech", kind)


def define_flags() -> None:
    f = flags
    # Data
    f.DEFINE_string("train_files", "", "comma-separated list of CSV or SDB files to train on (merged)")
    f.DEFINE_string("dev_files", "", "comma-separated list of CSV or SDB files to validate on after each epoch "
                    "(each reported separately)")
    f.DEFINE_string("test_files", "", "comma-separated list of CSV or SDB files to test on after training")
    f.DEFINE_integer("limit_train", 0, "maximum number of training samples (0 = all)")
    f.DEFINE_integer("limit_dev", 0, "maximum number of dev samples per file list (0 = all)")
    f.DEFINE_integer("limit_test", 0, "maximum number of test samples (0 = all)")
    f.DEFINE_boolean("skip_bad_samples", True, "report and skip CSV rows that cannot be used (missing or "
                     "unreadable audio, empty or out-of-alphabet transcript, transcript too long for the "
                     "audio); --noskip_bad_samples stops at the first one instead")
    f.DEFINE_string("feature_cache", "", "directory caching the training set's un-augmented features "
                    "(one file per audio file, written the first time it is used); augmentations run after "
                    "the cache, so they still differ every epoch")
    f.DEFINE_integer("cache_for_epochs", 0, "start a fresh --feature_cache every N epochs (0 = never)")
    f.DEFINE_multi_string("augment", None, "augment training samples on the fly, repeatable: "
                          "--augment NAME[p=P,KEY=VALUE,...], values v, v~r (random radius), start:end "
                          "(moving over training), start:end~r. NAMEs: overlay reverb resample codec "
                          "volume speed pitch tempo warp frequency_mask time_mask dropout add multiply")
    # Features
    f.DEFINE_integer("audio_sample_rate", 16000, "sample rate the model works at; other rates are resampled")
    f.DEFINE_integer("feature_win_len", 20, "spectrogram window length in milliseconds (the paper's 20 ms)")
    f.DEFINE_integer("feature_win_step", 10, "spectrogram window step in milliseconds")
    # Geometry
    f.DEFINE_enum("model_family", "deepspeech2", ["deepspeech2", "mozilla"], "the model of a new run: Deep "
                  "Speech 2 (convolutions, recurrent layers with BatchNorm, log spectrogram), or Mozilla "
                  "DeepSpeech 0.9's (26 MFCC with 9 frames of context, 3 dense layers, one LSTM of --n_hidden "
                  "units, 2 dense layers; exports that Mozilla's libdeepspeech runs). A checkpoint to load "
                  "decides for itself (Mozilla/Coqui release checkpoints are recognized)")
    f.DEFINE_integer("n_hidden", 256, "units of each recurrent layer (per direction) and of the fully "
                     "connected layer")
    f.DEFINE_enum("conv_type", "1d", ["1d", "2d"], "convolutions over time x frequency (2d) or time (1d)")
    f.DEFINE_string("conv_layers", "512:11:3",
                    "1-3 convolution layers, comma-separated FILTERS:KTIMExKFREQ:STIMExSFREQ "
                    "(for 1d: FILTERS:KTIME:STIME); the time strides set the output frame rate. The paper's 2D "
                    "front end: --conv_type 2d --conv_layers 32:11x41:2x2,32:11x21:1x2")
    f.DEFINE_enum("rnn_type", "gru", ["gru", "lstm", "rnn"], "recurrent cell (rnn: clipped-ReLU simple RNN)")
    f.DEFINE_integer("rnn_layers", 3, "number of recurrent layers")
    f.DEFINE_boolean("bidirectional", True, "bidirectional recurrent layers (--nobidirectional for "
                     "streaming models)")
    f.DEFINE_integer("lookahead", 0, "lookahead (row) convolution context tau in output frames above "
                     "a unidirectional stack; 0 = none (the paper uses 80 at 20 ms frames)")
    f.DEFINE_float("dropout_rate", 0.05, "dropout rate after the recurrent layers and the fully connected "
                   "layer (Mozilla's layer 1: here also after rnn_1; see --dropout_rate2/3/6 for the others)")
    f.DEFINE_float("relu_clip", 20.0, "clipped ReLU ceiling: min(max(x, 0), relu_clip)")
    # Optimisation
    f.DEFINE_integer("epochs", 75, "how many epochs (complete runs through the training data) to train")
    f.DEFINE_integer("train_batch_size", 1, "number of samples per device in a training batch")
    f.DEFINE_integer("dev_batch_size", 1, "number of samples per device in a validation batch")
    f.DEFINE_integer("test_batch_size", 1, "number of samples per device in a test batch")
    f.DEFINE_enum("optimizer", "adam", ["adam", "sgd"], "adam (Mozilla's) or sgd (the paper's SGD with "
                  "Nesterov momentum)")
    f.DEFINE_float("learning_rate", 0.001, "learning rate")
    f.DEFINE_float("beta1", 0.9, "Adam beta 1")
    f.DEFINE_float("beta2", 0.999, "Adam beta 2")
    f.DEFINE_float("epsilon", 1e-8, "Adam epsilon")
    f.DEFINE_float("momentum", 0.99, "SGD Nesterov momentum")
    f.DEFINE_float("lr_anneal", 1.0, "divide the learning rate by this after every epoch (the paper "
                   "anneals by 1.2; 1 = constant)")
    f.DEFINE_float("clip_norm", 400.0, "clip gradients to this global norm (0 = no clipping)")
    f.DEFINE_boolean("sortagrad", True, "SortaGrad: the first epoch in order of increasing length")
    f.DEFINE_integer("random_seed", 4568, "seed for weight initialization and data order")
    f.DEFINE_boolean("force_initialize_learning_rate", False, "on resume, use --learning_rate instead of "
                     "the rate stored in the checkpoint")
    f.DEFINE_boolean("early_stop", False, "stop when the dev loss has not improved for --es_epochs epochs")
    f.DEFINE_integer("es_epochs", 25, "epochs without dev-loss improvement before an early stop")
    f.DEFINE_float("es_min_delta", 0.05, "the smallest dev-loss decrease that counts as an improvement")
    f.DEFINE_boolean("reduce_lr_on_plateau", False, "on a dev-loss plateau, reload the best checkpoint and "
                     "lower the learning rate")
    f.DEFINE_integer("plateau_epochs", 10, "epochs without improvement that make a plateau")
    f.DEFINE_float("plateau_reduction", 0.1, "learning-rate multiplier on a plateau")
    f.DEFINE_boolean("automatic_mixed_precision", False, "train with Keras mixed precision: computations "
                     "in --mixed_precision_dtype, variables, BatchNorm statistics, logits and CTC loss in "
                     "float32 (float16 uses dynamic loss scaling)")
    f.DEFINE_integer("cpu_devices", 1, "split the CPU into this many logical devices and train on all of "
                     "them with MirroredStrategy (tests and CPU clusters; GPUs are used automatically)")
    f.DEFINE_enum("mixed_precision_dtype", "float16", ["float16", "bfloat16"], "computation type of "
                  "--automatic_mixed_precision: float16 (dynamic loss scaling; fast on GPUs of compute "
                  "capability 7.0+) or bfloat16 (float32's exponent range, so no loss scaling; suits "
                  "Ampere/Hopper GPUs and recent CPUs with AVX512-BF16 or AMX)")
    f.DEFINE_boolean("xla", False, "compile the training and evaluation steps with XLA "
                     "(tf.function(jit_compile=True)); one compilation per padded batch shape; for GPUs "
                     "(on CPUs measured slower than without)")
    f.DEFINE_enum("rnn_kernel", "auto", ["auto", "fused", "generic"], "how the recurrent layers run (same "
                  "variables, outputs and checkpoints either way): generic (sequence-wise BatchNorm of W x "
                  "for all frames, then a loop doing U h per step), fused (BatchNorm folded into the input "
                  "weights so the whole recurrence runs in cuDNN on a GPU, in Keras' recurrent loop on a "
                  "CPU; GRU and LSTM only), auto (cuDNN on a GPU where it can run, on a CPU the generic "
                  "loop, faster there in whole training steps); the log says per layer which runs and why")
    f.DEFINE_boolean("use_allow_growth", True, "let TensorFlow take GPU memory as needed instead of all "
                     "of it at start (Mozilla's default was False); TF_FORCE_GPU_ALLOW_GROWTH, when set, "
                     "is honoured instead")
    # Checkpoints
    f.DEFINE_string("checkpoint_dir", "", "directory to load and save checkpoints in (default: "
                    "~/.local/share/deepspeech/checkpoints)")
    f.DEFINE_string("load_checkpoint_dir", "", "directory to load checkpoints from (default: "
                    "--checkpoint_dir)")
    f.DEFINE_string("save_checkpoint_dir", "", "directory to save checkpoints to (default: "
                    "--checkpoint_dir)")
    f.DEFINE_enum("load_train", "auto", ["auto", "best", "last", "init"], "what to start training from: "
                  "auto tries best, then last, then a fresh model (init)")
    f.DEFINE_enum("load_evaluate", "auto", ["auto", "best", "last"], "what to test and infer with: "
                  "auto tries best, then last")
    f.DEFINE_integer("checkpoint_secs", 600, "save a checkpoint this often (seconds) within an epoch; one is "
                     "always saved at the end of an epoch")
    f.DEFINE_integer("max_to_keep", 5, "number of train-<step> checkpoints to keep")
    # Transfer learning
    f.DEFINE_integer("drop_source_layers", 0, "starting a new run from --load_checkpoint_dir (saving to "
                     "another --save_checkpoint_dir), re-initialize the last N weight layers, counted from "
                     "the output: logits, fc, lookahead (if any), rnn_k..rnn_1, conv_k..conv_1 (the feature "
                     "normalization is kept). 1 = the output layer, what a new --alphabet_config_path needs. "
                     "Never applied on resume, test or export")
    f.DEFINE_integer("freeze_source_layers", 0, "with weights loaded from a checkpoint, train only the last N "
                     "weight layers (counted as for --drop_source_layers) and freeze the others: not trained, "
                     "their BatchNorm statistics fixed; 0 trains all. Give the --drop_source_layers value to "
                     "train only the re-initialized layers (the flag and meaning of Mozilla PR #3247; "
                     "DeepSpeech 0.9 and Coqui STT have only --drop_source_layers)")
    # Output and reporting
    f.DEFINE_string("alphabet_config_path", "data/alphabet.txt", "path to the alphabet file (Mozilla "
                    "format; bin/build_alphabet.py builds one from CSVs)")
    f.DEFINE_boolean("bytes_output_mode", False, "enable Bytes Output Mode mode. When this is used the "
                     "model outputs UTF-8 byte values directly rather than using an alphabet mapping. The "
                     "--alphabet_config_path option will be ignored. See the training documentation for "
                     "more details. (Here: 255 byte labels + blank; recorded in the checkpoint's model.json, "
                     "so --test_files/--export_dir/--one_shot_infer of such a checkpoint need not repeat it; "
                     "decode with a bytes-mode scorer from generate_scorer_package "
                     "--force_bytes_output_mode)")
    # Decoder (test and one-shot inference; the per-epoch dev report stays greedy)
    f.DEFINE_string("scorer_path", "", "KenLM scorer package (.scorer) for the beam search; empty: beam "
                    "search without a language model")
    f.DEFINE_alias("scorer", "scorer_path")
    f.DEFINE_integer("beam_width", 1024, "beam width of the CTC beam search (0: greedy decoding)")
    f.DEFINE_float("lm_alpha", 0.931289039105002, "language model weight alpha")
    f.DEFINE_float("lm_beta", 1.1834137581510284, "word insertion weight beta (per character in "
                   "character mode)")
    f.DEFINE_float("cutoff_prob", 1.0, "at each frame try only the most likely labels whose probabilities "
                   "add up to this (1.0: no pruning)")
    f.DEFINE_integer("cutoff_top_n", 300, "at each frame try at most this many labels")
    f.DEFINE_integer("decoder_processes", 0, "processes for the beam search (0: one per CPU core)")
    f.DEFINE_integer("report_count", 5, "number of best, median and worst samples in the test report")
    f.DEFINE_string("test_output_file", "", "write every test sample's result to this JSON file")
    f.DEFINE_string("summary_dir", "", "TensorBoard summaries (default: ~/.local/share/deepspeech/summaries)")
    f.DEFINE_boolean("show_progressbar", True, "show progress bars for training and evaluation")
    f.DEFINE_integer("log_level", 1, "log level: 0 DEBUG, 1 INFO, 2 WARNING, 3 ERROR")
    f.DEFINE_string("one_shot_infer", "", "an audio file to transcribe with the checkpoint, printing the "
                    "transcript (no training)")
    _define_export_flags()
    _define_mozilla_flags()


def _define_mozilla_flags() -> None:
    """The rest of Mozilla DeepSpeech 0.9.3's flags: implemented, or accepted with one log line saying
    why they do not apply (``INAPPLICABLE``, logged by ``log_inapplicable_flags``)."""
    f = flags
    f.DEFINE_string("metrics_files", "", "comma-separated list of CSV or SDB files whose CTC loss is logged "
                    "after each epoch's validation (\"Metrics for epoch N on FILE - loss: L\"); unlike "
                    "--dev_files it decides nothing (best checkpoint, early stop, plateaus)")
    f.DEFINE_boolean("reverse_train", False, "run the length-sorted training epoch (the first, SortaGrad's) "
                     "longest first instead of shortest first; later epochs are shuffled batches either way")
    f.DEFINE_boolean("reverse_dev", False, "validate (--dev_files, --metrics_files) longest first")
    f.DEFINE_boolean("reverse_test", False, "test (--test_files) longest first")
    f.DEFINE_float("dropout_rate2", -1.0, "dropout rate after the second recurrent layer, rnn_2 (Mozilla's "
                   "layer 2); negative: --dropout_rate")
    f.DEFINE_float("dropout_rate3", -1.0, "dropout rate after the third and any further recurrent layers, "
                   "rnn_3... (Mozilla's layer 3); negative: --dropout_rate")
    f.DEFINE_float("dropout_rate4", 0.0, "Mozilla's layer 4 (LSTM) dropout, unused by Mozilla's graph and "
                   "here (accepted for compatibility)")
    f.DEFINE_float("dropout_rate5", 0.0, "Mozilla's layer 5 dropout placeholder, unused by Mozilla's graph and "
                   "here (accepted for compatibility; Mozilla's layer 5 takes --dropout_rate6)")
    f.DEFINE_float("dropout_rate6", -1.0, "dropout rate after the fully connected layer before the output "
                   "(Mozilla's layer 5, which took this flag); negative: --dropout_rate")
    f.DEFINE_boolean("layer_norm", False, "Mozilla: layer normalization after its dense layers. Accepted "
                     "only: this model normalizes every convolution and recurrent layer with (sequence-wise) "
                     "BatchNorm, as Deep Speech 2")
    f.DEFINE_boolean("train_cudnn", False, "Mozilla: train with CuDNN's LSTM. Accepted only: the recurrent "
                     "kernel is chosen automatically (--rnn_kernel) and checkpoints are the same for every "
                     "kernel; Mozilla's cuDNN-trained release checkpoints load without it")
    f.DEFINE_boolean("load_cudnn", False, "Mozilla: load a CuDNN checkpoint into a CPU graph. Accepted only: "
                     "Mozilla/Coqui release checkpoints always import, the LSTM's missing Adam moments "
                     "starting at zero (what --load_cudnn did); nothing else to convert")
    f.DEFINE_string("read_buffer", "1MB", "Mozilla: buffer size for reading sample files, with a KB/MB/GB/TB "
                    "suffix. Checked and accepted only: audio files are read whole (tf.io.read_file, "
                    "libsndfile)")
    f.DEFINE_boolean("log_placement", False, "log the device each TensorFlow operation runs on "
                     "(tf.debugging.set_log_device_placement)")
    f.DEFINE_integer("inter_op_parallelism_threads", 0, "threads running independent TensorFlow operations "
                     "in parallel (tf.config.threading; 0: TensorFlow's choice)")
    f.DEFINE_integer("intra_op_parallelism_threads", 0, "threads inside one TensorFlow operation "
                     "(tf.config.threading; 0: TensorFlow's choice)")
    # lm_optimizer.py's (Mozilla lists them in DeepSpeech.py --helpfull too)
    f.DEFINE_float("lm_alpha_max", 5.0, "lm_optimizer.py: the maximum of the alpha range searched, [0, "
                   "lm_alpha_max]")
    f.DEFINE_float("lm_beta_max", 5.0, "lm_optimizer.py: the maximum of the beta range searched, [0, "
                   "lm_beta_max]")
    f.DEFINE_integer("n_trials", 2400, "lm_optimizer.py: the number of alpha/beta pairs to try")


# Mozilla's flags that cannot apply to this model: set to another value than the default, each logs this
INAPPLICABLE = {
    "layer_norm": "this model normalizes every convolution and recurrent layer with sequence-wise BatchNorm "
                  "(Deep Speech 2); Mozilla's layer normalization of its dense layers does not apply",
    "train_cudnn": "the recurrent kernel is chosen automatically (cuDNN on a GPU where it can run, see "
                   "--rnn_kernel); checkpoints are the same for every kernel",
    "load_cudnn": "Mozilla/Coqui release checkpoints (cuDNN-trained) always import, their LSTM's missing Adam "
                  "moments starting at zero as with Mozilla's --load_cudnn; checkpoints of this trainer are the "
                  "same for every recurrent kernel",
    "read_buffer": "audio files are read whole (tf.io.read_file, libsndfile); there is no read buffer to size",
    "dropout_rate4": "Mozilla's graph does not use it either (no dropout on its LSTM layer)",
    "dropout_rate5": "Mozilla's graph does not use it either (its layer 5 takes --dropout_rate6)",
}


def log_inapplicable_flags() -> None:
    """One log line per Mozilla flag set to a non-default value that cannot apply here; checks
    --read_buffer's value (a clear error for a bad one)."""
    parse_size(FLAGS.read_buffer, "--read_buffer")
    for name, why in INAPPLICABLE.items():
        if FLAGS[name].value != FLAGS[name].default:
            log.info("--%s %s is accepted for Mozilla compatibility but ignored: %s", name,
                     FLAGS[name].value, why)


def parse_size(value: str, flag: str) -> int:
    """Mozilla's file sizes: digits with an optional K/M/G/T prefix and optional B ('1MB', '512k', '4096')."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)b?\s*", value, re.IGNORECASE)
    if not match:
        raise ValueError(f"{flag} {value!r}: expected a size like 1MB (digits, then B, KB, MB, GB or TB)")
    return int(match.group(1)) * 1024 ** " kmgt".index(match.group(2).lower() or " ")


def mozilla_dropouts() -> tuple[tuple[float, ...], float]:
    """(rates after rnn_1, rnn_2, rnn_3..., rate after fc) from --dropout_rate and Mozilla's
    --dropout_rate2/3/6 (layers 1, 2, 3 and 5 there); a negative rate means --dropout_rate."""
    def rate(value: float) -> float:
        return FLAGS.dropout_rate if value < 0 else value

    first, second, third = FLAGS.dropout_rate, rate(FLAGS.dropout_rate2), rate(FLAGS.dropout_rate3)
    rnn = tuple((first, second)[i] if i < 2 else third for i in range(FLAGS.rnn_layers))
    return rnn, rate(FLAGS.dropout_rate6)


def _define_export_flags() -> None:
    """Mozilla's export flags (names and defaults), plus quantization, SavedModel and .pbmm."""
    f = flags
    f.DEFINE_string("export_dir", "", "export the model (best checkpoint, see --load_evaluate) into this "
                    "directory: output_graph.pb always, .pbmm/.tflite/saved_model by the flags below, and the "
                    "model card <author>_<model_name>_<version>.md; after training when given with "
                    "--train_files, else from --checkpoint_dir")
    f.DEFINE_boolean("remove_export", False, "remove the files of a previous export in --export_dir first")
    f.DEFINE_string("export_file_name", "output_graph", "base name of the exported model files")
    f.DEFINE_boolean("export_tflite", False, "also export <export_file_name>.tflite (the client runs it with "
                     "ai-edge-litert alone, without TensorFlow; quantized by --export_quantize)")
    f.DEFINE_boolean("export_pbmm", False, "also write <export_file_name>.pbmm, the frozen graph with "
                     "memory-mapped weights (what bin/convert_graphdef_memmapped_format.py makes from the .pb)")
    f.DEFINE_boolean("export_savedmodel", False, "also export a TensorFlow SavedModel (saved_model/, "
                     "signature serving_default)")
    f.DEFINE_boolean("export_zip", False, "export TFLite and pack it with the model card and the "
                     "--scorer_path scorer into <export_dir>.zip")
    f.DEFINE_enum("export_quantize", "dynamic", ["none", "fp16", "dynamic", "int8"], "quantization of the "
                  "TFLite model: none (float32), fp16 (float16 weights), dynamic (int8 weights, Mozilla's "
                  "TFLite export), int8 (full integer, calibrated on --export_calibration_files; float input "
                  "and output). The .pb, .pbmm and SavedModel stay float32")
    f.DEFINE_string("export_calibration_files", "", "comma-separated CSV files whose audio calibrates "
                    "--export_quantize int8 (default: --train_files)")
    f.DEFINE_integer("export_calibration_samples", 100, "utterances of --export_calibration_files used to "
                     "calibrate int8 quantization (spread evenly over the files)")
    f.DEFINE_integer("export_batch_size", 1, "batch size of the exported model; only 1 is supported (one "
                     "stream per model call)")
    f.DEFINE_integer("n_steps", 16, "output frames per call of an exported streaming (step) model")
    f.DEFINE_integer("export_beam_width", 500, "default beam width of the exported model's client decoder")
    card = {
        "author_id": ("author", "author of the exported model: a GitHub user or organization name"),
        "model_name": ("model", "name of the exported model; must not include the version number"),
        "model_version": ("0.0.1", "semantic version of the exported model"),
        "contact_info": (None, "public contact information of the author. Can be an email address, or a "
                         "link to a contact form, issue tracker, or discussion forum. Must provide a way to "
                         "reach the model authors"),
        "license": (None, "SPDX identifier of the license of the exported model"),
        "language": (None, "language the model was trained on - IETF BCP 47 language tag including at "
                     "least language, script and region subtags. E.g. \"en-Latn-UK\" or \"de-Latn-DE\""),
        "min_ds_version": (None, "minimum deepspeech client version (inclusive) the exported model is "
                           "compatible with"),
        "max_ds_version": (None, "maximum deepspeech client version (inclusive) the exported model is "
                           "compatible with"),
        "description": (None, "free-form description of the model (the model card's body)"),
    }
    for name, (default, help_text) in card.items():  # Mozilla's defaults: the help text in <>
        f.DEFINE_string(f"export_{name}", f"<{help_text}>" if default is None else default, help_text)


def parse_conv_layers(spec: str, conv_type: str) -> tuple[ConvSpec, ...]:
    layers = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        try:
            parts = item.split(":")
            filters = int(parts[0])
            kernel = [int(v) for v in parts[1].split("x")]
            stride = [int(v) for v in parts[2].split("x")]
            if conv_type == "1d":
                kernel, stride = kernel[:1] + [1], stride[:1] + [1]
            if len(kernel) != 2 or len(stride) != 2:
                raise ValueError
        except (ValueError, IndexError):
            raise ValueError(f"--conv_layers: cannot read {item!r}; expected FILTERS:KTxKF:STxSF "
                             f"(e.g. 32:11x41:2x2) or, for 1d, FILTERS:KT:ST") from None
        layers.append(ConvSpec(filters, tuple(kernel), tuple(stride)))
    return tuple(layers)


def checkpoint_dirs() -> tuple[str, str]:
    base = FLAGS.checkpoint_dir or _default_dir("checkpoints")
    return FLAGS.load_checkpoint_dir or base, FLAGS.save_checkpoint_dir or base


def feature_config() -> FeatureConfig:
    return FeatureConfig(sample_rate=FLAGS.audio_sample_rate, win_len_ms=FLAGS.feature_win_len,
                         win_step_ms=FLAGS.feature_win_step)


def model_config(n_features: int, num_classes: int) -> ModelConfig:
    cfg = ModelConfig(
        n_features=n_features, num_classes=num_classes,
        conv=parse_conv_layers(FLAGS.conv_layers, FLAGS.conv_type), conv_type=FLAGS.conv_type,
        rnn_type=FLAGS.rnn_type, rnn_layers=FLAGS.rnn_layers, rnn_units=FLAGS.n_hidden,
        bidirectional=FLAGS.bidirectional, lookahead=FLAGS.lookahead, fc_units=FLAGS.n_hidden,
        dropout=FLAGS.dropout_rate, rnn_dropout=mozilla_dropouts()[0], fc_dropout=mozilla_dropouts()[1],
        relu_clip=FLAGS.relu_clip)
    cfg.validate()
    return cfg


def mozilla_model_config(num_classes: int, n_hidden: int | None = None):
    """Mozilla's geometry: ``n_hidden`` (a checkpoint's) or --n_hidden; --dropout_rate/2/3/6 after its
    layers 1, 2, 3 and 5, as Mozilla."""
    from .mozilla.model import MozillaConfig

    def rate(value: float) -> float:
        return FLAGS.dropout_rate if value < 0 else value

    cfg = MozillaConfig(n_hidden=n_hidden or FLAGS.n_hidden, num_classes=num_classes,
                        dropout=(FLAGS.dropout_rate, rate(FLAGS.dropout_rate2), rate(FLAGS.dropout_rate3),
                                 rate(FLAGS.dropout_rate6)), relu_clip=FLAGS.relu_clip)
    cfg.validate()
    return cfg


def output_alphabet(description: dict | None = None, where: str = "") -> Alphabet:
    """The model's output labels, the one place they are decided: UTF-8 bytes (--bytes_output_mode, or
    a checkpoint whose model.json ``description`` records bytes mode), else --alphabet_config_path,
    which must then be the checkpoint's alphabet. ``where``: the checkpoint directory, for errors."""
    if description is not None and description.get("bytes_output_mode"):
        return UTF8Alphabet()
    if description is not None and FLAGS.bytes_output_mode:
        raise AlphabetError(f"the checkpoint in {where} was trained with an alphabet of "
                            f"{len(description['alphabet'])} labels, not with --bytes_output_mode")
    if FLAGS.bytes_output_mode:
        return UTF8Alphabet()
    if description is not None and description.get("release_checkpoint"):
        return _release_alphabet(description)
    alphabet = Alphabet.from_file(FLAGS.alphabet_config_path)
    if description is not None and description["alphabet"] != alphabet.labels:
        raise AlphabetError(f"{FLAGS.alphabet_config_path} differs from the alphabet the checkpoint in "
                            f"{where} was trained with")
    return alphabet


def _release_alphabet(description: dict) -> Alphabet:
    """A Mozilla/Coqui release checkpoint's alphabet: alphabet.txt beside it (Coqui's releases), which an
    explicit --alphabet_config_path must equal, else --alphabet_config_path, which must fit its output."""
    path, classes = description["release_checkpoint"], description["model"]["num_classes"]
    if description.get("alphabet") is not None:
        alphabet = Alphabet.from_labels(description["alphabet"])
        if FLAGS["alphabet_config_path"].present and \
                Alphabet.from_file(FLAGS.alphabet_config_path).labels != alphabet.labels:
            raise AlphabetError(f"{FLAGS.alphabet_config_path} differs from alphabet.txt beside {path}")
        return alphabet
    alphabet = Alphabet.from_file(FLAGS.alphabet_config_path)
    if len(alphabet) + 1 != classes:
        raise AlphabetError(f"{path}: its output layer has {classes} classes, {FLAGS.alphabet_config_path} has "
                            f"{len(alphabet)} labels (+ blank = {len(alphabet) + 1}): give the alphabet it was "
                            f"trained with")
    return alphabet


def train_config() -> TrainConfig:
    return TrainConfig(
        epochs=FLAGS.epochs, batch_size=FLAGS.train_batch_size, dev_batch_size=FLAGS.dev_batch_size,
        optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate, beta1=FLAGS.beta1,
        beta2=FLAGS.beta2, epsilon=FLAGS.epsilon, momentum=FLAGS.momentum, lr_anneal=FLAGS.lr_anneal,
        clip_norm=FLAGS.clip_norm, sortagrad=FLAGS.sortagrad, random_seed=FLAGS.random_seed,
        load_train=FLAGS.load_train, force_initialize_learning_rate=FLAGS.force_initialize_learning_rate,
        checkpoint_secs=FLAGS.checkpoint_secs, early_stop=FLAGS.early_stop, es_epochs=FLAGS.es_epochs,
        es_min_delta=FLAGS.es_min_delta, reduce_lr_on_plateau=FLAGS.reduce_lr_on_plateau,
        plateau_epochs=FLAGS.plateau_epochs, plateau_reduction=FLAGS.plateau_reduction,
        precision=precision_policy(), jit_compile=FLAGS.xla, rnn_kernel=FLAGS.rnn_kernel, show_progressbar=FLAGS.show_progressbar,
        summary_dir=FLAGS.summary_dir or _default_dir("summaries"),
        augmentations=parse_augmentations(FLAGS.augment), feature_cache=FLAGS.feature_cache,
        cache_for_epochs=FLAGS.cache_for_epochs, drop_source_layers=FLAGS.drop_source_layers,
        freeze_source_layers=FLAGS.freeze_source_layers, reverse_train=FLAGS.reverse_train,
        reverse_dev=FLAGS.reverse_dev)


def precision_policy() -> str:
    """The Keras dtype policy of --automatic_mixed_precision and --mixed_precision_dtype."""
    return f"mixed_{FLAGS.mixed_precision_dtype}" if FLAGS.automatic_mixed_precision else "float32"


def export_config() -> ExportConfig:
    if FLAGS.export_batch_size != 1:
        raise ValueError(f"--export_batch_size {FLAGS.export_batch_size}: only 1 is supported (the "
                         f"exported model runs one stream per call)")
    calibration = FLAGS.export_calibration_files or FLAGS.train_files
    card = ModelCard(**{name: getattr(FLAGS, f"export_{name}") for name in (
        "author_id", "model_name", "model_version", "contact_info", "license", "language", "description",
        "min_ds_version", "max_ds_version")})
    return ExportConfig(
        export_dir=FLAGS.export_dir, file_name=FLAGS.export_file_name, tflite=FLAGS.export_tflite,
        pbmm=FLAGS.export_pbmm, savedmodel=FLAGS.export_savedmodel, zip=FLAGS.export_zip,
        quantize=FLAGS.export_quantize,
        calibration_files=tuple(p.strip() for p in calibration.split(",") if p.strip()),
        calibration_samples=FLAGS.export_calibration_samples, n_steps=FLAGS.n_steps,
        beam_width=FLAGS.export_beam_width, scorer_path=FLAGS.scorer_path,
        remove_existing=FLAGS.remove_export, card=card)


def decoder_config() -> DecoderConfig:
    return DecoderConfig(beam_width=FLAGS.beam_width, scorer_path=FLAGS.scorer_path, lm_alpha=FLAGS.lm_alpha,
                         lm_beta=FLAGS.lm_beta, cutoff_prob=FLAGS.cutoff_prob, cutoff_top_n=FLAGS.cutoff_top_n,
                         num_processes=FLAGS.decoder_processes or os.cpu_count() or 1)
