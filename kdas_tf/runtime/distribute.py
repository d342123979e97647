"""The strategy factory: every training path runs under one tf.distribute strategy.

`default` is TensorFlow's no-op strategy, so single-device runs take the same
code path (strategy.run, reductions) as MirroredStrategy on GPUs,
MultiWorkerMirroredStrategy across hosts (TF_CONFIG) and TPUStrategy. TensorFlow is imported by the functions
that build, so kdas_tf.config offers STRATEGIES (and --help answers) without importing it.
"""

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def split_cpu(num_devices):
    """Expose the CPU as `num_devices` logical devices (tests MirroredStrategy without GPUs).

    Must run before TensorFlow initialises its devices.
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
    )
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def make_strategy(name="default", *, tpu=None, devices=None):
    """Build the tf.distribute strategy called `name` (one of STRATEGIES)."""
    import tensorflow as tf

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


def is_chief_task(task_type, task_id, cluster_tasks=()):
    """Whether a multi-worker task writes the run's files: the chief, or worker 0 in a cluster without one."""
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster_tasks


def writes_files(strategy):
    """False only on the non-chief workers of MultiWorkerMirroredStrategy, which run every step but must
    not write the checkpoints and results that the chief writes to the same (shared) paths."""
    import tensorflow as tf

    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    return is_chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())
