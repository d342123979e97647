"""What a run stands on: the work directory, its final rows' names and served rule, its lock, atomic storage, state
schemas, progress lines, the tf.distribute strategy."""
