"""Speed and memory against same-run references (python -m kdas_tf.bench), and the dry run's estimate."""
