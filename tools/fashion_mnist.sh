#!/usr/bin/env bash
# One Fashion-MNIST run of the whole method in one command, from the repository root: KDAS (teachers, search,
# final rows with 3 seeds, man-made network), the random-search baseline sharing its teachers, and the report
# that puts them side by side. Each step resumes when rerun. It shows the pipeline on real images; it is too
# small to judge the paper's claims (one search per controller, 3 seeds): the study that can is
# tools/fashion_mnist_study.py, reported in docs/fashion_mnist.md.
set -euo pipefail
PYTHON=${PYTHON:-python}
"$PYTHON" -m kdas_tf.search --flagfile=flags/fashion_mnist.cfg
"$PYTHON" -m kdas_tf.search --flagfile=flags/fashion_mnist_random.cfg
"$PYTHON" -m kdas_tf.report --workdir=runs/fashion_mnist --compare=runs/fashion_mnist_random
