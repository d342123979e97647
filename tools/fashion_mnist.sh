#!/usr/bin/env bash
# The published Fashion-MNIST run (docs/fashion_mnist.md) in one command, from the repository root:
# KDAS (teachers, search, final rows with 3 seeds, man-made network), the random-search baseline sharing
# its teachers, and the report that puts them side by side. Each step resumes when rerun.
set -euo pipefail
PYTHON=${PYTHON:-python}
"$PYTHON" -m kdas_tf.search --flagfile=flags/fashion_mnist.cfg
"$PYTHON" -m kdas_tf.search --flagfile=flags/fashion_mnist_random.cfg
"$PYTHON" -m kdas_tf.report --workdir=runs/fashion_mnist --compare=runs/fashion_mnist_random
