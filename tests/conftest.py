"""Test session setup: two logical CPUs (MirroredStrategy without GPUs) and deterministic ops."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from kdas_tf import distribute  # noqa: E402

distribute.split_cpu(2)
# Resume and strategy tests compare weights bit for bit (or nearly): no racy kernels.
tf.config.experimental.enable_op_determinism()


import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The digits flagfile shrunk so the whole pipeline (teachers, search, final trainings, export) takes ~40 s.
TINY_SEARCH = [
    "--num_teachers=2", "--epochs=2", "--search_epochs=1", "--trials_per_round=2",
    "--final_loss=od", "--student_loss=ce", "--verbosity=0",
]


def run_search(workdir, *extra, timeout=400):
    """python -m kdas_tf.search on digits as a user runs it, from the repository root."""
    command = [sys.executable, "-m", "kdas_tf.search", "--flagfile=flags/digits.cfg", f"--workdir={workdir}",
               *TINY_SEARCH, *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One finished tiny digits run shared by the end-to-end, export, report and TensorBoard tests.

    Returns (workdir, the finished process). Tests may add files (report/, exports/)
    but must not change what the run wrote.
    """
    workdir = str(tmp_path_factory.mktemp("tiny_run"))
    finished = run_search(workdir)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return workdir, finished
