"""The strategy factory: every training path runs under one tf.distribute strategy.

`default` is TensorFlow's no-op strategy, so single-device runs take the same
code path (strategy.run, reductions) as MirroredStrategy on GPUs,
MultiWorkerMirroredStrategy across hosts (TF_CONFIG) and TPUStrategy.
"""

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def split_cpu(num_devices):
    """Expose the CPU as `num_devices` logical devices (tests MirroredStrategy without GPUs).

    Must run before TensorFlow initialises its devices.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
    )
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def make_strategy(name="default", *, tpu=None, devices=None):
    """Build the tf.distribute strategy called `name` (one of STRATEGIES)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"--strategy={name!r} is not a strategy: expected one of {', '.join(STRATEGIES)}")
