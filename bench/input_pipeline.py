#!/usr/bin/env python3
"""Input pipeline throughput with on-the-fly augmentation, next to the demo model's training throughput.

    .venv/bin/python bench/input_pipeline.py --csv data/espeak-en/train.csv \
        --output bench/results/input_pipeline.jsonl

Pipeline: the trainer's own tf.data pipeline (make_dataset: decode, augment, log spectrogram, batches
of --batch_size in bucketed order), run flat out on all cores with nothing else running; seconds of
audio (the original clips) per second, the best of --repeats passes. Rows: no augmentation; the waveform
augmentations, each alone at p=1 and as a training mix; the SpecAugment masks; the other spectrogram
augmentations. Training: the demo model's steps fed by that pipeline, with the share of time spent
waiting for input (the pipeline stays ahead of training when that share is near zero; it still takes
its CPU time from the cores training runs on).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "training"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from deepspeech_training.augment import Augmenter, parse_augmentations  # noqa: E402
from deepspeech_training.data import batch_order, load_samples, make_dataset  # noqa: E402
from deepspeech_training.features import FeatureConfig  # noqa: E402
from deepspeech_training.model import DeepSpeech2, ModelConfig  # noqa: E402
from deepspeech_training.train import TrainConfig, make_optimizer, make_train_step  # noqa: E402
from ds_ctcdecoder.alphabet import Alphabet  # noqa: E402
from train_throughput import CONFIGS, time_steps  # noqa: E402


def pipelines(noise_csv: str) -> dict[str, list[str]]:
    waveform_mix = [f"overlay[p=0.4,source={noise_csv},snr=15~15]", "reverb[p=0.2,delay=20~10,decay=10~3]",
                    "resample[p=0.1,rate=8000~2000]", "codec[p=0.1,bitrate=12000~6000]",
                    "volume[p=0.5,dbfs=-20~15]", "speed[p=0.3]"]
    return {
        "none": [],
        "overlay": [f"overlay[source={noise_csv},snr=15~15]"],
        "reverb": ["reverb"],
        "resample": ["resample"],
        "codec": ["codec[bitrate=12000]"],
        "volume": ["volume[dbfs=-20~15]"],
        "speed": ["speed"],
        "waveform_mix": waveform_mix,
        "specaugment_masks": ["frequency_mask[n=2,size=20]", "time_mask[n=2,size=100]"],
        "pitch_tempo_warp": ["pitch", "tempo[factor=1~0.1]", "warp"],
        "waveform_mix+masks": waveform_mix + ["frequency_mask[n=2,size=20]", "time_mask[n=2,size=100]"],
    }


def augmenter(specs, features, stride, epoch_size):
    if not specs:
        return None
    return Augmenter(parse_augmentations(specs), features, stride, seed=0).for_epoch(1, 10, epoch_size)


def pipeline_throughput(samples, order, features, batch, augment, repeats) -> dict:
    """The epoch's batches, timed from the first batch (after tracing) to the end; the best of
    ``repeats`` passes (the machine is shared: the best pass is the least disturbed one)."""
    speeds = []
    for _ in range(repeats):
        iterator = iter(make_dataset(samples, order, features, batch, drop_remainder=True, augment=augment))
        next(iterator)
        audio, start = 0.0, time.time()
        for _, _, indices in iterator:
            audio += sum(samples[i].duration for i in indices.numpy())
        speeds.append(audio / (time.time() - start))
    return {"audio_s_per_s": max(speeds), "passes_audio_s_per_s": speeds, "audio_s": audio}


def training_throughput(samples, order, features, batch, augment, cfg, steps, warmup) -> dict:
    keras.utils.set_random_seed(0)
    model = DeepSpeech2(cfg, name="deepspeech2").build_for()
    opt = make_optimizer(TrainConfig(learning_rate=1e-4))
    opt.build(model.trainable_variables)
    dataset = make_dataset(samples, order, features, batch, drop_remainder=True, augment=augment).repeat()
    spec = make_dataset(samples, order[:1], features, batch).element_spec
    step = make_train_step(model, opt, tf.distribute.get_strategy(), batch, spec)
    result = time_steps(step, dataset, steps, warmup)
    result.pop("frames_per_s")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True, help="training CSV (clips and transcripts)")
    parser.add_argument("--noise_csv", default="", help="CSV of audio to overlay (default: --csv, i.e. babble)")
    parser.add_argument("--alphabet", default="data/alphabet.txt", help="alphabet file")
    parser.add_argument("--limit", type=int, default=640, help="clips per pipeline measurement")
    parser.add_argument("--batch_size", type=int, default=32, help="batch size")
    parser.add_argument("--train_steps", type=int, default=12, help="timed training steps per pipeline (0: none)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps first (tracing)")
    parser.add_argument("--repeats", type=int, default=2, help="pipeline passes per measurement (best)")
    parser.add_argument("--only", default="", help="comma-separated pipeline names to run (default: all)")
    parser.add_argument("--output", default="", help="append the results as JSON lines to this file")
    args = parser.parse_args()
    features = FeatureConfig()
    alphabet = Alphabet.from_file(args.alphabet)
    cfg = ModelConfig(features.n_features, len(alphabet) + 1, **CONFIGS["demo"])
    samples = load_samples([args.csv], alphabet, features, cfg.time_stride, limit=args.limit, progress=False)
    order = batch_order(samples, args.batch_size, epoch=1, sortagrad=True, seed=0, drop_remainder=True)
    chosen = pipelines(args.noise_csv or args.csv)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    train_on = {"none", "waveform_mix", "specaugment_masks", "waveform_mix+masks"}
    for name, specs in chosen.items():
        augment = augmenter(specs, features, cfg.time_stride, len(order))
        result = {"pipeline": name, "augment": specs, "clips": len(order), "batch_size": args.batch_size,
                  "cpu_threads": os.cpu_count(),
                  **pipeline_throughput(samples, order, features, args.batch_size, augment, args.repeats)}
        line = f"{name:20s} pipeline {result['audio_s_per_s']:7.0f} s audio/s"
        if args.train_steps and name in train_on:
            train = training_throughput(samples, order, features, args.batch_size, augment, cfg,
                                        args.train_steps, args.warmup)
            result["train_demo"] = train
            line += (f"   demo training {train['audio_s_per_s']:5.1f} s audio/s, input wait "
                     f"{100 * train['input_wait_fraction']:4.1f}%")
        print(line, flush=True)
        if args.output:
            with open(args.output, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
