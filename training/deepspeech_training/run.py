"""The trainer's entry point (``DeepSpeech.py``): train, test, export and one-shot inference."""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402

from . import __version__  # noqa: E402
from . import evaluate as ev  # noqa: E402
from .checkpoint import CheckpointError, CheckpointStore  # noqa: E402
from .data import DataError, load_samples  # noqa: E402
from .devices import configure_gpus  # noqa: E402
from .distribute import is_chief, make_strategy, worker_count  # noqa: E402
from .features import AudioError, FeatureConfig, load_audio, spectrogram  # noqa: E402
from .decoding import Decoder  # noqa: E402
from .export import export_model  # noqa: E402
from .flags import (FLAGS, checkpoint_dirs, decoder_config, define_flags, export_config,  # noqa: E402
                    feature_config, log_inapplicable_flags, model_config, mozilla_model_config,
                    output_alphabet, precision_policy, train_config)
from . import families  # noqa: E402
from .train import Trainer  # noqa: E402
from ds_ctcdecoder.alphabet import Alphabet, AlphabetError, UTF8Alphabet  # noqa: E402
from ds_ctcdecoder.native import NativeLibraryError  # noqa: E402
from .util.log import log, mozilla_log, setup_logging  # noqa: E402

USER_ERRORS = (DataError, AudioError, AlphabetError, CheckpointError, ValueError, FileNotFoundError,
               NativeLibraryError)


def files(value: str) -> list[str]:
    return [p for p in (s.strip() for s in value.split(",")) if p]


def setup_runtime() -> None:
    """What an entry point does before any TensorFlow operation: logging, Mozilla's thread-pool and
    placement-logging flags, the log line for each Mozilla flag that cannot apply, GPU memory growth."""
    setup_logging(FLAGS.log_level)
    if FLAGS.inter_op_parallelism_threads < 0 or FLAGS.intra_op_parallelism_threads < 0:
        raise ValueError("--inter_op_parallelism_threads/--intra_op_parallelism_threads: 0 (TensorFlow's "
                         "choice) or a positive number of threads")
    if FLAGS.inter_op_parallelism_threads:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_parallelism_threads)
    if FLAGS.intra_op_parallelism_threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_parallelism_threads)
    if FLAGS.log_placement:
        tf.debugging.set_log_device_placement(True)
    log_inapplicable_flags()
    configure_gpus(FLAGS.use_allow_growth, precision_policy())  # before the GPUs initialize


def _description(features: FeatureConfig, model_cfg, alphabet: Alphabet) -> dict:
    import json
    return {"version": __version__, "features": features.to_dict(),
            "model": json.loads(model_cfg.to_json()), "alphabet": alphabet.labels,
            "bytes_output_mode": isinstance(alphabet, UTF8Alphabet)}


def load_for_inference(strategy, load_dir: str):
    """-> (model, features, alphabet) described by the checkpoint directory (geometry and bytes mode
    from model.json, or from a Mozilla/Coqui release checkpoint's tensors; not from flags)."""
    description = families.describe_directory(load_dir, FLAGS.load_evaluate)
    if description is None:
        raise CheckpointError(f"{load_dir!r} holds neither a model.json (a checkpoint directory of this "
                              f"trainer) nor a Mozilla/Coqui release checkpoint")
    alphabet = output_alphabet(description, load_dir)
    features = FeatureConfig(**description["features"])
    with strategy.scope():
        model = families.build_model(families.config_from_dict(description["model"]))
    store = CheckpointStore(model, None, {}, load_dir=load_dir, save_dir="")
    if store.restore(FLAGS.load_evaluate, with_optimizer=False) is None:
        raise CheckpointError(f"no checkpoint to evaluate in {load_dir!r}")
    return model, features, alphabet


def _mozilla_source(load_dir: str, save_dir: str) -> dict | None:
    """The description of the Mozilla-family checkpoint this run continues or starts from, if any."""
    if FLAGS.load_train == "init":
        return None
    for directory in (save_dir, load_dir):
        description = families.describe_directory(directory, FLAGS.load_train) if directory else None
        if description is not None:
            return description if description["model"].get("family") == families.MOZILLA else None
    return None


def _training_setup(load_dir: str, save_dir: str):
    """-> (alphabet, features, model config) of a training run: the family and Mozilla's geometry come
    from the checkpoint it continues or starts from, else from --model_family and the flags."""
    source = _mozilla_source(load_dir, save_dir)
    if source is None and FLAGS.model_family == families.DEEPSPEECH2:
        alphabet, features = output_alphabet(), feature_config()
        return alphabet, features, model_config(features.n_features, len(alphabet) + 1)
    alphabet = output_alphabet()
    if source is not None and source.get("release_checkpoint") and source.get("alphabet") is not None \
            and not FLAGS["alphabet_config_path"].present and not FLAGS.bytes_output_mode:
        alphabet = Alphabet.from_labels(source["alphabet"])  # Coqui's alphabet.txt beside the checkpoint
    n_hidden = source["model"]["n_hidden"] if source else None
    if n_hidden and FLAGS["n_hidden"].present and FLAGS.n_hidden != n_hidden:
        log.info("--n_hidden %d: the checkpoint's layers have %d units, which this run keeps", FLAGS.n_hidden,
                 n_hidden)
    return alphabet, families.mozilla_features(FLAGS.audio_sample_rate), \
        mozilla_model_config(len(alphabet) + 1, n_hidden)


def _train(strategy, load_dir, save_dir):
    cfg = train_config()
    keras.mixed_precision.set_dtype_policy(cfg.precision)  # float32 unless --automatic_mixed_precision
    alphabet, features, model_cfg = _training_setup(load_dir, save_dir)
    trainer = Trainer(strategy, model_cfg, features, alphabet, cfg, (load_dir, save_dir),
                      FLAGS.max_to_keep, _description(features, model_cfg, alphabet),
                      FLAGS.flags_into_string())
    check = dict(alphabet=alphabet, features=features, time_stride=model_cfg.time_stride,
                 fail_fast=not FLAGS.skip_bad_samples, progress=FLAGS.show_progressbar)
    train = load_samples(files(FLAGS.train_files), limit=FLAGS.limit_train, **check)
    dev = {f: load_samples([f], limit=FLAGS.limit_dev, **check) for f in files(FLAGS.dev_files)}
    metrics = {f: load_samples([f], limit=FLAGS.limit_dev, **check) for f in files(FLAGS.metrics_files)}
    trainer.prepare(train)
    outcome = trainer.fit(train, dev, metrics)
    log.info("Training finished: %s", outcome)
    return outcome


def _test(strategy, load_dir):
    model, features, alphabet = load_for_inference(strategy, load_dir)
    check = dict(alphabet=alphabet, features=features, time_stride=model.model_config.time_stride,
                 fail_fast=not FLAGS.skip_bad_samples, progress=FLAGS.show_progressbar)
    decoder = Decoder(decoder_config(), alphabet)
    log.info("Testing with %s", decoder.name)
    reports = []
    for path in files(FLAGS.test_files):
        samples = load_samples([path], limit=FLAGS.limit_test, **check)
        mozilla_log.info("Testing model on %s", path)
        report = ev.evaluate(model, strategy, samples, os.path.basename(path), alphabet, features,
                             FLAGS.test_batch_size, FLAGS.show_progressbar, decoder=decoder,
                             reverse=FLAGS.reverse_test)
        ev.log_report(report, FLAGS.report_count)
        reports.append(report)
    if FLAGS.test_output_file:
        ev.write_test_output(FLAGS.test_output_file, reports)
    return reports


def _export(load_dir, config):
    keras.mixed_precision.set_dtype_policy("float32")  # exports are float32, also after AMP training
    # a plain model (the default strategy): its variables freeze and save as ordinary ones
    model, features, alphabet = load_for_inference(tf.distribute.get_strategy(), load_dir)
    export_model(model, features, alphabet.labels, config, utf8=isinstance(alphabet, UTF8Alphabet))


def _one_shot(strategy, load_dir):
    model, features, alphabet = load_for_inference(strategy, load_dir)
    spec = spectrogram(tf.constant(load_audio(FLAGS.one_shot_infer, features.sample_rate)), features)
    logits, lengths = model((spec[None], tf.shape(spec)[:1]), training=False)
    decoder = Decoder(decoder_config(), alphabet)
    print(decoder.decode(logits.numpy(), lengths.numpy())[0])  # the transcript is this command's output


def main(argv):
    del argv
    setup_logging(FLAGS.log_level, mozilla_stdout=not FLAGS.one_shot_infer)  # a transcript is its output
    try:
        if not (FLAGS.train_files or FLAGS.test_files or FLAGS.export_dir or FLAGS.one_shot_infer):
            raise ValueError("nothing to do: give --train_files, --test_files, --export_dir or --one_shot_infer")
        setup_runtime()
        strategy = make_strategy(FLAGS.cpu_devices)  # first: a multi-worker strategy must precede other TF work
        keras.utils.set_random_seed(FLAGS.random_seed)
        export = export_config() if FLAGS.export_dir else None
        if export:
            export.validate()  # a wrong export flag fails now, not after training
        load_dir, save_dir = checkpoint_dirs()
        outcome = "done"
        if FLAGS.train_files:
            outcome = _train(strategy, load_dir, save_dir)
            load_dir = save_dir  # test what was just trained
        if outcome in ("SIGINT", "SIGTERM"):
            return 130 if outcome == "SIGINT" else 143
        if not is_chief(strategy):
            log.info("Training done on this host; the chief tests and exports")
            return 0
        if worker_count(strategy) > 1:
            strategy = tf.distribute.get_strategy()  # the chief alone: no collectives with the others
        if FLAGS.test_files:
            _test(strategy, load_dir)
        if export:
            _export(load_dir, export)
        if FLAGS.one_shot_infer:
            _one_shot(strategy, load_dir)
    except USER_ERRORS as err:
        log.error("%s", err)
        return 1
    return 0


def evaluate_main(argv):
    """Mozilla's evaluate.py: test the checkpoint (--load_evaluate of --checkpoint_dir or
    --load_checkpoint_dir) on --test_files, as ``DeepSpeech.py --test_files`` without training."""
    del argv
    setup_logging(FLAGS.log_level, mozilla_stdout=True)
    try:
        if not FLAGS.test_files:
            raise ValueError("give the sets to evaluate on with --test_files")
        if FLAGS.train_files or FLAGS.export_dir or FLAGS.one_shot_infer:
            log.info("evaluate.py only tests: --train_files, --export_dir and --one_shot_infer are for "
                     "DeepSpeech.py")
        setup_runtime()
        strategy = make_strategy(FLAGS.cpu_devices)
        keras.utils.set_random_seed(FLAGS.random_seed)
        _test(strategy, checkpoint_dirs()[0])
    except USER_ERRORS as err:
        log.error("%s", err)
        return 1
    return 0


def run_script():
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))


def run_evaluate_script():
    define_flags()
    app.run(lambda argv: sys.exit(evaluate_main(argv)))
