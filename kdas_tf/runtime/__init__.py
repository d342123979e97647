"""What a run stands on: the work directory, its lock, atomic storage, state schemas, progress lines, the tf.distribute strategy."""
