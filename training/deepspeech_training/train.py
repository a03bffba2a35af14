"""Training: CTC under a tf.distribute strategy, SortaGrad, bucketed batches, resumable checkpoints."""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from . import evaluate as ev
from .checkpoint import CheckpointError, CheckpointStore
from .augment import Augmenter
from .devices import choose_recurrent_kernels, replica_runner
from .recurrent import KERNELS
from .data import Sample, batch_order, feature_statistics, make_dataset, padding_efficiency
from .distribute import distribute_batches, is_chief, sum_over_workers, worker_count
from .features import FeatureCache, FeatureConfig
from .families import build_model
from .transfer import freeze_all_but_last, last_layers, log_plan
from ds_ctcdecoder.alphabet import Alphabet
from .util.log import log, mozilla_log
from .util.plots import plot_training_curves


PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
PLOT_EVERY_S = 30  # training_curves.png is redrawn at most this often, and when the run ends


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 75
    batch_size: int = 1  # per device, as Mozilla's --train_batch_size
    dev_batch_size: int = 1
    optimizer: str = "adam"  # or "sgd": the paper's SGD with Nesterov momentum
    learning_rate: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    momentum: float = 0.99
    lr_anneal: float = 1.0  # learning rate divided by this after every epoch
    clip_norm: float = 400.0
    sortagrad: bool = True
    random_seed: int = 4568
    load_train: str = "auto"
    force_initialize_learning_rate: bool = False
    checkpoint_secs: int = 600
    early_stop: bool = False
    es_epochs: int = 25
    es_min_delta: float = 0.05
    reduce_lr_on_plateau: bool = False
    plateau_epochs: int = 10
    plateau_reduction: float = 0.1
    precision: str = "float32"  # Keras dtype policy: float32, mixed_float16 or mixed_bfloat16
    jit_compile: bool = False  # --xla: compile the training and dev evaluation steps with XLA
    rnn_kernel: str = "auto"  # --rnn_kernel: auto, fused or generic (devices.choose_recurrent_kernels)
    show_progressbar: bool = True
    summary_dir: str = ""
    augmentations: tuple = ()  # augment.Augmentation objects (--augment), applied to training data only
    feature_cache: str = ""  # directory of un-augmented training features ("" = none)
    cache_for_epochs: int = 0  # a fresh feature cache every N epochs (0 = never)
    drop_source_layers: int = 0  # a new run from another checkpoint dir re-initializes the last N layers
    freeze_source_layers: int = 0  # with loaded weights, train only the last N layers (0 = all)
    reverse_train: bool = False  # Mozilla's --reverse_train: the sorted (SortaGrad) epoch longest first
    reverse_dev: bool = False  # Mozilla's --reverse_dev: dev and metrics sets longest first

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r} ({', '.join(PRECISIONS)})")
        if self.rnn_kernel not in KERNELS:
            raise ValueError(f"unknown recurrent kernel {self.rnn_kernel!r} ({', '.join(KERNELS)})")


@dataclass
class Counters:
    """Training state saved in every checkpoint next to the weights."""

    epoch: tf.Variable = field(default_factory=lambda: tf.Variable(0, dtype=tf.int64, trainable=False))
    batch_in_epoch: tf.Variable = field(
        default_factory=lambda: tf.Variable(0, dtype=tf.int64, trainable=False))
    best_dev_loss: tf.Variable = field(
        default_factory=lambda: tf.Variable(math.inf, dtype=tf.float64, trainable=False))
    epochs_since_best: tf.Variable = field(
        default_factory=lambda: tf.Variable(0, dtype=tf.int64, trainable=False))
    history: tf.Variable = field(  # rows of (epoch, train loss, dev loss, dev WER, dev CER)
        default_factory=lambda: tf.Variable(tf.zeros([0, 5], tf.float64), trainable=False,
                                            shape=tf.TensorShape([None, 5])))

    def as_dict(self) -> dict:
        return dict(vars(self))

    def reset(self) -> None:
        """Back to the values of a new run (the weights loaded for fine-tuning stay)."""
        for name, initial in Counters().as_dict().items():
            getattr(self, name).assign(initial)


class StopRequested:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the next step and returns."""

    def __init__(self):
        self.signal = None
        self.by_peer = False  # another host of a multi-worker job was signalled

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, _frame):
        if self.signal is not None:  # a second Ctrl-C aborts at once
            raise KeyboardInterrupt
        self.signal = signum
        log.warning("Received %s: saving a checkpoint and stopping", signal.Signals(signum).name)

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)

    @property
    def requested(self) -> bool:
        return self.signal is not None or self.by_peer

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else "SIGTERM"

    def agreed(self, strategy) -> bool:
        """Whether to stop now. Hosts of a multi-worker job stop together when any one was signalled:
        one stopping alone would leave the others waiting in the next all-reduce."""
        if worker_count(strategy) > 1 and not self.by_peer:
            signalled = sum_over_workers(strategy, [self.signal is not None])[0] > 0
            if signalled and self.signal is None:
                self.by_peer = True
                log.warning("Another host was signalled: saving a checkpoint and stopping")
        return self.requested


def make_optimizer(cfg: TrainConfig):
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(cfg.learning_rate, momentum=cfg.momentum, nesterov=True,
                                   global_clipnorm=cfg.clip_norm or None)
    elif cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(cfg.learning_rate, beta_1=cfg.beta1, beta_2=cfg.beta2,
                                    epsilon=cfg.epsilon, global_clipnorm=cfg.clip_norm or None)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adam or sgd)")
    # float16 needs loss scaling (small gradients underflow); bfloat16 has float32's exponent range
    return keras.optimizers.LossScaleOptimizer(opt) if cfg.precision == "mixed_float16" else opt


def make_train_step(model, optimizer, strategy, global_batch: int, element_spec, jit_compile=False):
    """One distributed step -> (mean loss over finite samples, per-sample losses, indices).

    A sample whose features or CTC loss are NaN/inf is left out of the update (and reported by the
    caller), so a bad clip never reaches the weights or the checkpoint. ``jit_compile``: the replica
    step is compiled with XLA where the strategy allows (see devices.replica_runner).
    """
    scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def replica_step(inputs, targets, indices):
        (features, lengths), (labels, label_len) = inputs, targets
        # corrupt audio (NaN/inf samples) must not reach BatchNorm statistics or the weights
        clean = tf.reduce_all(tf.math.is_finite(features), axis=[1, 2])
        features = tf.where(clean[:, None, None], features, 0.0)
        with tf.GradientTape() as tape:
            logits, out_len = model((features, lengths), training=True)
            per_sample = tf.nn.ctc_loss(labels, logits, label_len, out_len,
                                        logits_time_major=False, blank_index=-1)
            per_sample = tf.where(clean, per_sample, float("nan"))
            finite = tf.math.is_finite(per_sample)
            loss = tf.reduce_sum(tf.where(finite, per_sample, 0.0)) / global_batch
            scaled = optimizer.scale_loss(loss) if scaling else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        grads = [tf.where(tf.math.is_finite(g), g, tf.zeros_like(g)) for g in grads]
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, per_sample, indices

    run = replica_runner(replica_step, strategy, jit_compile, "training")

    def step(batch):
        loss, per_sample, indices = run(batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None), per_sample, indices

    return tf.function(step, input_signature=[element_spec])


class Trainer:
    """Owns model, optimizer, checkpoints and the epoch loop for one run of the trainer."""

    def __init__(self, strategy, model_cfg, features: FeatureConfig, alphabet: Alphabet,
                 cfg: TrainConfig, store_dirs: tuple[str, str], max_to_keep: int, description: dict,
                 flags_text: str = ""):
        self.strategy, self.cfg, self.features, self.alphabet = strategy, cfg, features, alphabet
        with strategy.scope():
            self.model = build_model(model_cfg)
            self.optimizer = make_optimizer(cfg)
            self.optimizer.build(self.model.trainable_variables)
            self.counters = Counters()
        self._plotted = 0.0  # when training_curves.png was last drawn (time.time())
        self.store = CheckpointStore(self.model, self.optimizer, self.counters.as_dict(),
                                     load_dir=store_dirs[0], save_dir=store_dirs[1],
                                     max_to_keep=max_to_keep, description=description)
        self.chief = is_chief(strategy)  # the one host that writes files
        # model.json is written once a checkpoint has loaded: a resumed run's is what it is checked against
        self.description, self.flags_text = description, flags_text
        log.info(self.model.summary_line())
        choose_recurrent_kernels(self.model, cfg.rnn_kernel, bool(tf.config.list_logical_devices("GPU")),
                                 cfg.jit_compile and strategy.num_replicas_in_sync == 1, cfg.precision)
        self.augmenter = Augmenter(cfg.augmentations, features, model_cfg.time_stride, cfg.random_seed)
        if self.augmenter:
            log.info("Augmenting training samples: %s", self.augmenter.describe())
        if cfg.cache_for_epochs and cfg.feature_cache:
            log.info("--cache_for_epochs %d: the cache holds un-augmented features, so a fresh one only "
                     "costs time; augmentations differ every epoch without it", cfg.cache_for_epochs)

    @property
    def learning_rate(self):
        scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        opt = self.optimizer.inner_optimizer if scaled else self.optimizer
        return opt.learning_rate

    def prepare(self, train: list[Sample]) -> None:
        """Resume from a checkpoint, start from another run's weights (transfer learning), or measure
        feature statistics for a fresh model."""
        cfg = self.cfg
        dropped = tuple(last_layers(self.model, cfg.drop_source_layers, "--drop_source_layers"))
        last_layers(self.model, cfg.freeze_source_layers, "--freeze_source_layers")  # checks N early
        loaded, resumed = self.store.restore_for_training(cfg.load_train, dropped)
        if not loaded and (cfg.drop_source_layers or cfg.freeze_source_layers):
            raise CheckpointError(f"--drop_source_layers/--freeze_source_layers need a checkpoint to start "
                                  f"from, and {self.store.load_dir!r} has none (--load_train {cfg.load_train})")
        if loaded and cfg.force_initialize_learning_rate:
            self.learning_rate.assign(cfg.learning_rate)
        frozen = freeze_all_but_last(self.model, cfg.freeze_source_layers) \
            if loaded and cfg.freeze_source_layers else []
        if loaded and not resumed:
            self.counters.reset()
            log_plan(loaded, list(dropped), frozen, float(self.learning_rate.numpy()))
            log.info("Starting a new run of %d epochs from the loaded weights", cfg.epochs)
        elif loaded:
            self._log_resume(frozen)
        if self.chief:
            self.store.describe(self.description, self.flags_text)
        if loaded or self.model.normalization is None:
            return
        mean, std = feature_statistics(train, self.features, seed=cfg.random_seed)
        self.model.normalization.set_statistics(mean, std)
        log.info("Measured feature statistics on %d training samples", min(len(train), 2000))

    def _log_resume(self, frozen: list[str]) -> None:
        epoch = int(self.counters.epoch.numpy())
        if self.cfg.drop_source_layers:
            log.info("--drop_source_layers applies when a run starts: resuming %s with its own weights",
                     self.store.save_dir)
        if frozen:
            log.info("Frozen (not trained, BatchNorm statistics fixed): %s", ", ".join(frozen))
        if epoch >= self.cfg.epochs:
            log.warning("The checkpoint has already trained %d epochs (--epochs %d): raise --epochs "
                        "to train more", epoch, self.cfg.epochs)
        else:
            log.info("Resuming at epoch %d, batch %d", epoch + 1, int(self.counters.batch_in_epoch.numpy()))

    def fit(self, train: list[Sample], dev: dict[str, list[Sample]],
            metrics: dict[str, list[Sample]] | None = None) -> str:
        """Run the remaining epochs -> 'done', 'early stop' or the name of the stopping signal.

        ``dev`` sets are validated after every epoch (best checkpoint, early stop, plateaus);
        ``metrics`` sets (Mozilla's --metrics_files) only have their CTC loss logged after that."""
        cfg, replicas = self.cfg, self.strategy.num_replicas_in_sync
        global_batch = cfg.batch_size * replicas
        log.info("Global batch: %d (%d per device x %d devices%s)", global_batch, cfg.batch_size, replicas,
                 f" on {worker_count(self.strategy)} hosts" if worker_count(self.strategy) > 1 else "")
        spec = self._element_spec(train)
        step = make_train_step(self.model, self.optimizer, self.strategy, global_batch, spec, cfg.jit_compile)
        eval_step = ev.make_eval_step(self.model, self.strategy, spec, cfg.jit_compile)
        writers = self._summary_writers()
        with StopRequested() as stop:
            while int(self.counters.epoch.numpy()) < cfg.epochs:
                epoch = int(self.counters.epoch.numpy())
                train_loss = self._run_epoch(step, train, epoch, global_batch, stop, writers)
                if stop.requested:
                    self._plot(force=True)
                    return stop.name
                outcome = self._end_epoch(epoch, train_loss, dev, eval_step, writers)
                self._log_metrics(epoch, metrics or {}, eval_step, writers)
                if outcome:
                    self._plot(force=True)
                    return outcome
        self._plot(force=True)
        return "done"

    def _plot(self, force: bool) -> None:
        """Redraw training_curves.png (a fifth of a second: not after each of many short epochs)."""
        if self.chief and len(self.counters.history.numpy()) and (
                force or time.time() - self._plotted >= PLOT_EVERY_S):
            plot_training_curves(self.counters.history.numpy(), self.store.save_dir)
            self._plotted = time.time()

    def _run_epoch(self, step, train, epoch, global_batch, stop, writers) -> float:
        cfg = self.cfg
        order = batch_order(train, global_batch, epoch, cfg.sortagrad, cfg.random_seed, drop_remainder=True,
                            reverse=cfg.reverse_train)
        n_batches = len(order) // global_batch
        if n_batches == 0:
            raise ValueError(f"{len(train)} training samples are fewer than one batch of {global_batch}")
        done = int(self.counters.batch_in_epoch.numpy())
        if epoch == 0 and done == 0:
            log.info("Padding efficiency: %.1f%% of padded frames are audio",
                     100 * padding_efficiency(train, order, global_batch))
        augment = self.augmenter.for_epoch(epoch, cfg.epochs, len(order), done * global_batch) \
            if self.augmenter else None
        cache = FeatureCache(cfg.feature_cache, self.features, epoch // cfg.cache_for_epochs
                             if cfg.cache_for_epochs else 0) if cfg.feature_cache else None
        batches = distribute_batches(
            self.strategy, lambda mine, positions, size: make_dataset(
                train, mine, self.features, size, drop_remainder=True, augment=augment, cache=cache,
                positions=positions), order[done * global_batch:], cfg.batch_size)
        losses, last_save = [], time.time()
        audio_seconds, started = 0.0, time.time()
        last_log = started
        if not cfg.show_progressbar:  # Mozilla's progress lines replace its bar
            mozilla_log.info("Training epoch %d...", epoch + 1)
        bar = tqdm(total=n_batches, initial=done, desc=f"Epoch {epoch + 1}/{cfg.epochs}",
                   disable=not (cfg.show_progressbar and self.chief), unit="batch")
        for batch in batches:
            loss, per_sample, indices = step(batch)
            self._report_non_finite(train, per_sample, indices)
            losses.append(float(loss))
            self.counters.batch_in_epoch.assign_add(1)
            audio_seconds += float(tf.reduce_sum(self._local_sum(batch[0][1]))) * \
                self.features.win_step_ms / 1000
            bar.update(1)
            speed = audio_seconds / (time.time() - started)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.2f}", audio_s_per_s=f"{speed:.0f}")
            if not cfg.show_progressbar and time.time() - last_log >= 60:  # logs without a bar
                last_log = time.time()
                log.info("Epoch %d: batch %d/%d, loss %.3f, %.0f s of audio per second",
                         epoch + 1, done + len(losses), n_batches, np.mean(losses[-20:]), speed)
            with writers["train"].as_default(step=self.optimizer.iterations):
                tf.summary.scalar("step_loss", loss)
            stopping = stop.agreed(self.strategy)
            if stopping or (cfg.checkpoint_secs and time.time() - last_save >= cfg.checkpoint_secs):
                self._save("last")
                last_save = time.time()
                if stopping:
                    break
        bar.close()
        audio_seconds = float(sum_over_workers(self.strategy, [audio_seconds])[0])
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        log.info("Epoch %d: train loss %.3f, %.0f s of audio per second", epoch + 1, mean_loss,
                 audio_seconds / max(time.time() - started, 1e-9))
        if not cfg.show_progressbar:
            mozilla_log.info("Finished training epoch %d - loss: %f", epoch + 1, mean_loss)
        return mean_loss

    def _element_spec(self, samples):
        """One signature for every batch (any batch size and length): the step is traced once."""
        return distribute_batches(self.strategy, lambda mine, positions, size: make_dataset(
            samples, mine, self.features, size), np.arange(1), self.cfg.batch_size).element_spec

    def _save(self, which: str) -> str | None:
        """A checkpoint from the chief (the other hosts hold the same weights and write nothing)."""
        return self.store.save(which, int(self.optimizer.iterations.numpy())) if self.chief else None

    def _local_sum(self, lengths):
        return [tf.reduce_sum(t) for t in self.strategy.experimental_local_results(lengths)]

    def _report_non_finite(self, train, per_sample, indices):
        losses = tf.concat(self.strategy.experimental_local_results(per_sample), 0).numpy()
        if np.isfinite(losses).all():
            return
        ids = tf.concat(self.strategy.experimental_local_results(indices), 0).numpy()
        bad = [f"{train[i].where} ({train[i].name})" for i, l in zip(ids, losses) if not np.isfinite(l)]
        log.warning("Non-finite CTC loss, left out of the update: %s", "; ".join(bad))

    def _end_epoch(self, epoch, train_loss, dev, eval_step, writers) -> str | None:
        cfg = self.cfg
        self.counters.epoch.assign(epoch + 1)
        self.counters.batch_in_epoch.assign(0)
        dev_loss = wer = cer = float("nan")
        if dev:
            reports = [self._validate(epoch, name, samples, eval_step) for name, samples in dev.items()]
            weights = [len(samples) for samples in dev.values()]  # the same on every host
            dev_loss = float(np.average([r.loss for r in reports], weights=weights))
            wer = float(np.average([r.wer for r in reports], weights=weights))
            cer = float(np.average([r.cer for r in reports], weights=weights))
            for r in reports:
                log.info("Epoch %d: dev %s loss %.3f, greedy WER %.1f%%, CER %.1f%%",
                         epoch + 1, r.name, r.loss, 100 * r.wer, 100 * r.cer)
            with writers["dev"].as_default(step=epoch + 1):
                for name, value in (("loss", dev_loss), ("wer", wer), ("cer", cer)):
                    tf.summary.scalar(name, value)
        row = tf.constant([[epoch + 1, train_loss, dev_loss, wer, cer]], tf.float64)
        self.counters.history.assign(tf.concat([self.counters.history, row], 0))
        outcome = self._track_best(dev_loss) if dev else None
        if cfg.lr_anneal != 1.0:
            self.learning_rate.assign(self.learning_rate / cfg.lr_anneal)
        self._save("last")
        self._plot(force=False)
        return outcome

    def _validate(self, epoch: int, name: str, samples: list[Sample], eval_step) -> ev.Report:
        cfg = self.cfg
        if not cfg.show_progressbar:
            mozilla_log.info("Validating epoch %d on %s...", epoch + 1, name)
        report = ev.evaluate(self.model, self.strategy, samples, name, self.alphabet, self.features,
                             cfg.dev_batch_size, cfg.show_progressbar and self.chief, eval_step,
                             reverse=cfg.reverse_dev)
        if not cfg.show_progressbar:
            mozilla_log.info("Finished validating epoch %d on %s - loss: %f", epoch + 1, name, report.loss)
        return report

    def _log_metrics(self, epoch: int, metrics: dict[str, list[Sample]], eval_step, writers) -> None:
        """Mozilla's --metrics_files: the CTC loss of each set, logged in Mozilla's words; it does not
        count for the best checkpoint, early stops or plateaus."""
        for name, samples in metrics.items():
            mozilla_log.info("Metrics for epoch %d on %s...", epoch + 1, name)
            loss = ev.mean_loss(self.model, self.strategy, samples, name, self.features,
                                self.cfg.dev_batch_size, self.cfg.show_progressbar and self.chief, eval_step,
                                reverse=self.cfg.reverse_dev)
            mozilla_log.info("Metrics for epoch %d on %s - loss: %f", epoch + 1, name, loss)
            with writers["metrics"].as_default(step=epoch + 1):
                tf.summary.scalar(f"loss/{name}", loss)

    def _track_best(self, dev_loss: float) -> str | None:
        cfg, c = self.cfg, self.counters
        if dev_loss < float(c.best_dev_loss.numpy()) - cfg.es_min_delta:
            c.best_dev_loss.assign(dev_loss)
            c.epochs_since_best.assign(0)
            path = self._save("best")
            if path:
                mozilla_log.info("Saved new best validating model with loss %f to: %s", dev_loss, path)
            return None
        c.epochs_since_best.assign_add(1)
        waited = int(c.epochs_since_best.numpy())
        if cfg.early_stop and waited >= cfg.es_epochs:
            log.info("Early stop: dev loss did not improve by %.3f in %d epochs", cfg.es_min_delta, waited)
            return "early stop"
        if cfg.reduce_lr_on_plateau and waited and waited % cfg.plateau_epochs == 0:
            self._reload_best_weights()  # Mozilla: back to the best weights, then a lower rate
            new_lr = float(self.learning_rate.numpy()) * cfg.plateau_reduction
            self.learning_rate.assign(new_lr)
            log.info("Dev loss plateaued: reloaded the best checkpoint, learning rate now %g", new_lr)
            self._save("best")
        return None

    def _reload_best_weights(self) -> None:
        """Restore the best checkpoint's weights but keep the run's counters and step."""
        kept = {k: v.numpy() for k, v in self.counters.as_dict().items()}
        step = self.optimizer.iterations.numpy()
        self.store.restore("best")
        for k, v in self.counters.as_dict().items():
            v.assign(kept[k])
        self.optimizer.iterations.assign(step)

    def _summary_writers(self) -> dict:
        if not self.cfg.summary_dir or not self.chief:
            return {k: tf.summary.create_noop_writer() for k in ("train", "dev", "metrics")}
        return {k: tf.summary.create_file_writer(f"{self.cfg.summary_dir}/{k}")
                for k in ("train", "dev", "metrics")}
