"""The tf.distribute strategy every step runs under, and how batches reach its replicas.

One machine: MirroredStrategy over its GPUs (or ``--cpu_devices`` logical CPUs). Several machines:
MultiWorkerMirroredStrategy, configured the standard way by the ``TF_CONFIG`` environment variable
(bin/run-multiworker.sh). Either way training is synchronous SGD on a global batch of
``per-device batch x replicas``, and each worker reads only its own share of every global batch.
"""
from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from .util.log import log


def cluster_spec() -> dict:
    """The cluster of ``TF_CONFIG`` ({} when unset), checked so a typo fails here, not in gRPC."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        config = json.loads(text)
        cluster, task = config.get("cluster", {}), config.get("task", {})
        hosts = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
        if hosts and (task.get("type") not in cluster or
                      not 0 <= int(task.get("index", 0)) < len(cluster[task["type"]])):
            raise ValueError(f"task {task} is not in the cluster")
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"TF_CONFIG cannot be used ({err}); expected "
                         '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                         '"index": I}}') from None
    return cluster if hosts > 1 else {}


def make_strategy(cpu_devices: int = 1) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when TF_CONFIG names several hosts; else MirroredStrategy over all
    GPUs (or ``cpu_devices`` logical CPUs); else the default strategy.

    Call it before any other TensorFlow work: a multi-worker strategy must be created first.
    """
    cluster = cluster_spec()
    gpus = tf.config.list_physical_devices("GPU")  # memory growth: devices.configure_gpus, before this
    if cluster:
        if cpu_devices > 1:
            raise ValueError("--cpu_devices cannot be combined with a multi-worker TF_CONFIG: each worker "
                             "trains on its GPUs, or on its CPU as one device")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        log.info("Strategy: MultiWorkerMirroredStrategy, %s %d of %d host(s)%s, %d replica(s) in sync",
                 resolver.task_type, resolver.task_id, worker_count(strategy),
                 " (chief)" if is_chief(strategy) else "", strategy.num_replicas_in_sync)
        return strategy
    if len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
    elif cpu_devices > 1 and not gpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        if len(tf.config.get_logical_device_configuration(cpu) or []) != cpu_devices:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_devices)])
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(cpu_devices)],
                                                  cross_device_ops=tf.distribute.ReductionToOneDevice())
    else:
        strategy = tf.distribute.get_strategy()
    log.info("Strategy: %s over %d device(s)%s", type(strategy).__name__,
             strategy.num_replicas_in_sync, f" ({len(gpus)} GPU)" if gpus else "")
    return strategy


def worker_count(strategy: tf.distribute.Strategy) -> int:
    """Hosts training together (1 unless the strategy spans a TF_CONFIG cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return max(sum(len(spec.get(kind, [])) for kind in ("chief", "worker")), 1)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief writes checkpoints, summaries, plots and exports (every host under one strategy)."""
    return bool(strategy.extended.should_checkpoint)


def replica_order(order: np.ndarray, per_replica: int, replicas: int, workers: int = 1, worker: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """This worker's part of ``order``, whose consecutive runs of ``per_replica`` are the batches of its
    replicas in turn -> (sample indices, their positions in ``order``).

    Global batch g is ``order[g*G:(g+1)*G]`` (G = per_replica x replicas) on every strategy: replica r
    of the whole job gets its r-th slice, so N devices see exactly the samples one device would see
    in a batch of G. A last partial batch leaves the trailing replicas short or empty.
    """
    global_batch, local = per_replica * replicas, per_replica * replicas // workers
    positions = np.arange(len(order))
    mine = np.concatenate([positions[start + worker * local:start + (worker + 1) * local]
                           for start in range(0, len(order), global_batch)] or [positions[:0]])
    return np.asarray(order)[mine], mine


def distribute_batches(strategy: tf.distribute.Strategy, make_batches, order: np.ndarray,
                       per_replica: int):
    """A distributed dataset of per-replica batches; ``make_batches(order, positions, batch_size)``
    builds one worker's tf.data pipeline (data.make_dataset), so each host loads only its samples."""
    workers = worker_count(strategy)

    def worker_dataset(context: tf.distribute.InputContext):
        mine, positions = replica_order(order, per_replica, strategy.num_replicas_in_sync, workers,
                                        context.input_pipeline_id)
        return make_batches(mine, positions, per_replica)

    return strategy.distribute_datasets_from_function(worker_dataset)


def sum_over_workers(strategy: tf.distribute.Strategy, values) -> np.ndarray:
    """Element-wise sum of a host-side vector over all workers (each passes its own; one worker: as is).

    Every worker must call it at the same point: it is a collective operation.
    """
    values = np.asarray(values, np.float64)
    if worker_count(strategy) == 1:
        return values

    def own(ctx):  # each worker's first replica contributes its vector, the others zeros
        per_worker = strategy.num_replicas_in_sync // worker_count(strategy)
        first = tf.equal(ctx.replica_id_in_sync_group % per_worker, 0)
        return tf.where(first, tf.constant(values), tf.zeros_like(values))

    per_replica = strategy.run(lambda: own(tf.distribute.get_replica_context()))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None).numpy()
