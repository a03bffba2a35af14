"""On-the-fly augmentation with Mozilla DeepSpeech 0.9's ``--augment`` syntax and semantics.

``--augment name[p=0.5,key=value,...]`` is repeatable. Every value is a range:

- ``v``: a constant;
- ``v~r``: uniform in [v-r, v+r], drawn anew for every sample;
- ``start:end``: moves linearly with the training clock, 0.0 at the start of training, 1.0 at its end
  (computed per sample: (epoch + position in the epoch / epoch size) / epochs);
- ``start:end~r``: both. Integer parameters round to integers (half to even, as Python's ``round``).

``p`` (default 1.0) is the per-sample probability of the augmentation. Augmentations run in
command-line order within a domain, domains in the order sample (the waveform) -> signal (the
waveform) -> spectrogram (the log power spectrogram before the model's normalization) -> features
(the same log spectrogram: this model's features are the spectrogram itself).

Everything runs as TensorFlow ops inside the ``tf.data`` map, in parallel. The randomness is stateless,
seeded from (``--random_seed``, epoch, sample index): each epoch differs, and a run is reproducible.
The augmentation classes live in ``augment_ops.py``; this module parses, orders and applies them.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field

import tensorflow as tf

from .features import FeatureConfig, spectrogram

DOMAINS = ("sample", "signal", "spectrogram", "features")
WAVEFORM_DOMAINS = ("sample", "signal")
REGISTRY: dict[str, type] = {}  # --augment name -> class, filled by @register in augment_ops
P_DRAW = 0x70  # the draw of p; the ops number their own draws from 1
_SPEC = re.compile(r"^\s*(?P<name>[a-z_]+)\s*(\[(?P<params>.*)\])?\s*$")


class AugmentError(ValueError):
    """A bad ``--augment`` value; the message quotes it."""


@dataclass(frozen=True)
class ValueRange:
    """Mozilla's int-range / float-range: start:end moving with the clock, ~r uniform radius."""

    start: float
    end: float
    r: float = 0.0
    integer: bool = False

    @classmethod
    def parse(cls, text, integer: bool = False) -> "ValueRange":
        kind = int if integer else float
        value, _, radius = str(text).strip().partition("~")
        start, _, end = value.partition(":")
        if "~" in radius or ":" in end or ":" in radius:
            raise ValueError(f"{text!r}: at most one ':' and one '~', as in start:end~r")
        try:
            parsed = [kind(v) for v in (start, end or start, radius or 0)]
        except ValueError:
            raise ValueError(f"{text!r} is not {'an integer' if integer else 'a number'} range "
                             f"(v, v~r, start:end or start:end~r)") from None
        if parsed[2] < 0:
            raise ValueError(f"{text!r}: the radius after '~' must not be negative")
        return cls(parsed[0], parsed[1], parsed[2], integer)

    def __str__(self) -> str:
        fmt = (lambda v: str(int(v))) if self.integer else (lambda v: f"{v:g}")
        text = fmt(self.start) if self.start == self.end else f"{fmt(self.start)}:{fmt(self.end)}"
        return f"{text}~{fmt(self.r)}" if self.r else text

    @property
    def largest(self) -> float:
        return max(self.start, self.end) + self.r

    def pick(self, clock, seed, shape=()) -> tf.Tensor:
        """The value at training clock ``clock`` (float32 in [0, 1]): int32 or float32, of ``shape``."""
        value = self.start + tf.cast(clock, tf.float32) * (self.end - self.start)
        value = tf.broadcast_to(value, shape)
        if self.r:
            value = value + tf.random.stateless_uniform(shape, seed, -self.r, self.r)
        return tf.cast(tf.round(value), tf.int32) if self.integer else value


def int_param(default) -> field:
    return field(default=ValueRange.parse(default, integer=True), metadata={"kind": "int range"})


def float_param(default) -> field:
    return field(default=ValueRange.parse(default), metadata={"kind": "float range"})


def register(name: str):
    """Class decorator: make the augmentation available as ``--augment name[...]``."""
    def add(cls):
        cls.name = name
        REGISTRY[name] = cls
        return cls
    return add


@dataclass(frozen=True)
class Augmentation:
    """Base of every augmentation: ``p`` plus typed parameters; subclasses set ``domain``."""

    p: float = 1.0

    name = "augmentation"
    domain = "spectrogram"

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p={self.p:g} is not a probability between 0 and 1")
        if self.domain not in DOMAINS:
            raise ValueError(f"domain={self.domain} is not one of signal, spectrogram, features")

    @classmethod
    def from_params(cls, params: dict[str, str]) -> "Augmentation":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, text in params.items():
            if key not in fields:
                raise ValueError(f"unknown parameter {key!r} (parameters: {', '.join(fields)})")
            kind = fields[key].metadata.get("kind")
            if kind:
                values[key] = ValueRange.parse(text, integer=kind == "int range")
            elif fields[key].type in ("float", float):
                values[key] = _number(key, text)
            else:
                values[key] = text
        return cls(**values)

    def spec(self) -> str:
        """The canonical ``--augment`` value, with every parameter (for logs and flags.txt)."""
        params = ",".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))
        return f"{self.name}[{params}]"

    def prepare(self, features: FeatureConfig) -> None:
        """Check what can only be checked against the feature config or the disk (before training)."""

    def apply(self, x: tf.Tensor, ctx: "SampleContext") -> tf.Tensor:
        raise NotImplementedError


def _number(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{key}={text!r} is not a number") from None


def parse_augmentation(spec: str) -> Augmentation:
    """``name[k=v,...]`` -> an Augmentation; AugmentError names the bad value and what is wrong."""
    match = _SPEC.match(spec)
    if not match:
        raise AugmentError(f"--augment {spec!r}: expected NAME[KEY=VALUE,...], "
                           f"e.g. volume[p=0.5,dbfs=-20:-30]")
    cls = REGISTRY.get(match.group("name"))
    if cls is None:
        raise AugmentError(f"--augment {spec!r}: unknown augmentation {match.group('name')!r} "
                           f"(known: {', '.join(sorted(REGISTRY))})")
    params = {}
    for item in filter(None, (s.strip() for s in (match.group("params") or "").split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key or not value:
            raise AugmentError(f"--augment {spec!r}: {item!r} is not KEY=VALUE")
        if key in params:
            raise AugmentError(f"--augment {spec!r}: {key} is given twice")
        params[key] = value
    try:
        return cls.from_params(params)
    except (ValueError, TypeError) as err:
        raise AugmentError(f"--augment {spec!r}: {err}") from None


def parse_augmentations(specs) -> tuple[Augmentation, ...]:
    from . import augment_ops  # noqa: F401  (registers the augmentations)
    return tuple(parse_augmentation(s) for s in (specs or ()))


def ctc_frames_needed_tf(labels: tf.Tensor) -> tf.Tensor:
    """data.ctc_frames_needed inside the graph: a frame per label plus one between repeats."""
    labels = tf.reshape(labels, [-1])
    repeats = tf.reduce_sum(tf.cast(tf.equal(labels[1:], labels[:-1]), tf.int32))
    return tf.size(labels) + repeats


@dataclass(frozen=True, eq=False)
class SampleContext:
    """What an augmentation op may use besides the tensor: its seed, the clock, the CTC bound."""

    seed: tf.Tensor  # stateless seed [2] int64 of this augmentation on this sample
    clock: tf.Tensor  # float32 in [0, 1]
    min_frames: tf.Tensor  # int32: spectrogram frames the transcript needs for CTC
    features: FeatureConfig

    def draw(self, k: int) -> tf.Tensor:
        """The seed of this op's k-th random draw."""
        return tf.random.experimental.stateless_fold_in(self.seed, k)

    @property
    def min_samples(self) -> tf.Tensor:
        """Waveform samples that give ``min_frames`` spectrogram frames."""
        step, length = self.features.frame_step, self.features.frame_length
        return tf.maximum(self.min_frames - 1, 0) * step + length


class Augmenter:
    """Applies a list of augmentations to one training sample inside a ``tf.data`` map.

    ``for_epoch`` pins the epoch (a seed input) and the clock range; the sample's position in the
    epoch moves the clock within it, its index in the training set seeds its draws.
    """

    def __init__(self, augmentations, features: FeatureConfig, time_stride: int = 1, seed: int = 0):
        from . import augment_ops  # noqa: F401  (registers the augmentations)
        self.augmentations = tuple(augmentations)
        self.features, self.time_stride, self.seed = features, time_stride, seed
        for aug in self.augmentations:
            try:
                aug.prepare(features)
            except ValueError as err:  # also DataError from an overlay source CSV
                raise AugmentError(f"--augment {aug.spec()}: {err}") from None
        # domain order, command-line order within a domain; the command-line index seeds each one
        self.ordered = sorted(enumerate(self.augmentations), key=lambda ia: DOMAINS.index(ia[1].domain))
        self.epoch, self.clock_range, self.epoch_size, self.first_position = 0, (0.5, 0.5), 1, 0

    def __bool__(self) -> bool:
        return bool(self.augmentations)

    def describe(self) -> str:
        return " ".join(aug.spec() for aug in self.augmentations)

    def for_epoch(self, epoch: int, epochs: int, epoch_size: int, first_position: int = 0) -> "Augmenter":
        """This augmenter at training epoch ``epoch`` (0-based) of ``epochs``; ``first_position``: the
        position in the epoch of the dataset's first sample (a run resumed inside an epoch)."""
        other = self.with_clock(epoch / epochs, (epoch + 1) / epochs)
        other.epoch, other.epoch_size, other.first_position = epoch, max(epoch_size, 1), first_position
        return other

    def with_clock(self, start: float, end: float | None = None) -> "Augmenter":
        """A copy whose clock runs from ``start`` to ``end`` over the epoch (fixed if no end)."""
        other = copy.copy(self)
        other.clock_range = (start, start if end is None else end)
        return other

    def _draws(self, label, index, position) -> tuple[dict, dict]:
        """Each augmentation's SampleContext and whether it fires on this sample."""
        context = self._context(label, index, position)
        contexts = {i: context(i) for i, _ in self.ordered}
        return contexts, {i: self._fires(aug, contexts[i]) for i, aug in self.ordered}

    def _context(self, label, index, position):
        start, end = self.clock_range
        fraction = tf.cast(self.first_position + position, tf.float32) / self.epoch_size
        clock = tf.clip_by_value(start + (end - start) * fraction, 0.0, 1.0)
        sample_seed = tf.random.experimental.stateless_fold_in(
            tf.constant([self.seed, self.epoch], tf.int64), tf.cast(index, tf.int64))
        needed = ctc_frames_needed_tf(label)
        min_frames = tf.where(needed > 0, (needed - 1) * self.time_stride + 1, 0)

        def for_augmentation(i):
            return SampleContext(tf.random.experimental.stateless_fold_in(sample_seed, i), clock,
                                 min_frames, self.features)
        return for_augmentation

    @staticmethod
    def _fires(aug: Augmentation, ctx: SampleContext):
        """bool tensor: does ``aug`` apply to this sample; None when it always does (p = 1)."""
        if aug.p >= 1.0:
            return None
        return tf.random.stateless_uniform([], ctx.draw(P_DRAW)) < aug.p

    def _apply(self, tensor, domains, contexts, fires):
        for i, aug in self.ordered:
            if aug.domain not in domains or aug.p <= 0.0:
                continue
            if fires[i] is None:
                tensor = aug.apply(tensor, contexts[i])
            else:
                tensor = tf.cond(fires[i], lambda a=aug, c=contexts[i], t=tensor: a.apply(t, c),
                                 lambda t=tensor: t)
        return tensor

    def spectrogram(self, load_audio, plain_spectrogram, label, index, position) -> tf.Tensor:
        """The augmented log spectrogram [T, F] of one sample (graph mode, inside tf.data).

        ``load_audio()`` gives the waveform; ``plain_spectrogram()`` its un-augmented spectrogram (from
        the feature cache when there is one): waveform augmentations that do not fire this time leave
        the cached features usable.
        """
        contexts, fires = self._draws(label, index, position)
        waveform = [i for i, aug in self.ordered if aug.domain in WAVEFORM_DOMAINS and aug.p > 0]

        def augmented_spectrogram():
            return spectrogram(self._apply(load_audio(), WAVEFORM_DOMAINS, contexts, fires), self.features)

        if not waveform:
            spec = plain_spectrogram()
        elif any(fires[i] is None for i in waveform):
            spec = augmented_spectrogram()
        else:
            spec = tf.cond(tf.reduce_any(tf.stack([fires[i] for i in waveform])), augmented_spectrogram,
                           plain_spectrogram)
        spec = self._apply(spec, ("spectrogram", "features"), contexts, fires)
        return tf.ensure_shape(spec, [None, self.features.n_features])

    def augment_sample(self, audio, label, index, position) -> tuple[tf.Tensor, tf.Tensor]:
        """-> (augmented waveform, augmented log spectrogram) of one sample, for bin/data_set_tool.py.

        The waveform carries the sample- and signal-domain augmentations; the spectrogram all of them.
        """
        contexts, fires = self._draws(label, index, position)
        audio = self._apply(audio, WAVEFORM_DOMAINS, contexts, fires)
        spec = self._apply(spectrogram(audio, self.features), ("spectrogram", "features"), contexts, fires)
        return audio, tf.ensure_shape(spec, [None, self.features.n_features])

