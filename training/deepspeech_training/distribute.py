"""The tf.distribute strategy every step runs under."""
from __future__ import annotations

import tensorflow as tf

from .util.log import log


def make_strategy(cpu_devices: int = 1) -> tf.distribute.Strategy:
    """MirroredStrategy over all GPUs (or over ``cpu_devices`` logical CPUs), else the default one."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:  # take GPU memory as needed, not all at start
        tf.config.experimental.set_memory_growth(gpu, True)
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
