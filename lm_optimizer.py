#!/usr/bin/env python3
"""Search the scorer's alpha and beta with Optuna, as Mozilla's lm_optimizer.py.

    ./lm_optimizer.py --test_files dev.csv --checkpoint_dir ck --scorer_path kenlm.scorer --n_trials 100

The model runs over --test_files once; every trial only re-decodes its output. The objective is WER
(CER for a character-mode scorer). --update_scorer writes the best pair into the scorer package.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "training"))

from absl import app, flags  # noqa: E402

from deepspeech_training import evaluate as ev  # noqa: E402
from deepspeech_training.data import load_samples  # noqa: E402
from deepspeech_training.decoding import Decoder  # noqa: E402
from deepspeech_training.distribute import make_strategy  # noqa: E402
from deepspeech_training.flags import FLAGS, checkpoint_dirs, decoder_config, define_flags  # noqa: E402
from deepspeech_training.run import USER_ERRORS, files, load_for_inference, setup_runtime  # noqa: E402
from deepspeech_training.util.log import log, setup_logging  # noqa: E402
from ds_ctcdecoder.package import set_default_params  # noqa: E402


def define_optimizer_flags() -> None:
    define_flags()  # --n_trials, --lm_alpha_max and --lm_beta_max among them, as in Mozilla's flags.py
    flags.DEFINE_boolean("update_scorer", False, "write the best alpha and beta into --scorer_path as its defaults")


def model_outputs():
    """(alphabet, (samples, groups of logits) per test file): the expensive part, done once."""
    strategy = make_strategy(FLAGS.cpu_devices)
    load_dir = checkpoint_dirs()[0]
    model, features, alphabet = load_for_inference(strategy, load_dir)
    outputs = []
    for path in files(FLAGS.test_files):
        samples = load_samples([path], alphabet=alphabet, features=features, limit=FLAGS.limit_test,
                               time_stride=model.model_config.time_stride,
                               fail_fast=not FLAGS.skip_bad_samples, progress=FLAGS.show_progressbar)
        groups = list(ev.infer(model, strategy, samples, os.path.basename(path), features,
                               FLAGS.test_batch_size, FLAGS.show_progressbar, reverse=FLAGS.reverse_test))
        outputs.append((samples, groups))
    return alphabet, outputs


def optimize(outputs, decoder: Decoder):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    character_mode = decoder.scorer.is_utf8_mode()

    def objective(trial):
        decoder.scorer.reset_params(trial.suggest_float("lm_alpha", 0, FLAGS.lm_alpha_max),
                                    trial.suggest_float("lm_beta", 0, FLAGS.lm_beta_max))
        errors = []
        for step, (samples, groups) in enumerate(outputs):
            results = [r for g in groups for r in ev.decode_group(g, decoder, samples)]
            report = ev.summarize("", results)
            errors.append(report.cer if character_mode else report.wer)
            trial.report(sum(errors) / len(errors), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return sum(errors) / len(errors)

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=FLAGS.random_seed))
    study.optimize(objective, n_trials=FLAGS.n_trials, show_progress_bar=FLAGS.show_progressbar)
    return study.best_params, study.best_value, "CER" if character_mode else "WER"


def main(argv):
    del argv
    setup_logging(FLAGS.log_level)
    try:
        if not (FLAGS.test_files and FLAGS.scorer_path):
            raise ValueError("give --test_files (a dev set) and --scorer_path")
        setup_runtime()
        alphabet, outputs = model_outputs()
        decoder = Decoder(decoder_config(), alphabet)
        params, best, metric = optimize(outputs, decoder)
        log.info("Best params: lm_alpha=%f and lm_beta=%f with %s=%f", params["lm_alpha"], params["lm_beta"],
                 metric, best)
        if FLAGS.update_scorer:
            set_default_params(FLAGS.scorer_path, params["lm_alpha"], params["lm_beta"])
            log.info("Wrote them into %s as its default alpha and beta", FLAGS.scorer_path)
    except USER_ERRORS as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    define_optimizer_flags()
    app.run(lambda argv: sys.exit(main(argv)))
