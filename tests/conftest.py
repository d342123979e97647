"""Test session setup: two logical CPUs (MirroredStrategy without GPUs) and deterministic ops."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from kdas_tf.runtime import distribute  # noqa: E402

distribute.split_cpu(2)
# Resume and strategy tests compare weights bit for bit (or nearly): no racy kernels.
tf.config.experimental.enable_op_determinism()


import fcntl  # noqa: E402
import hashlib  # noqa: E402
import pickle  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from kdas_tf import config, pipeline  # noqa: E402
from kdas_tf.runtime import lock  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The digits flagfile shrunk so the whole pipeline (teachers, search, final trainings, export) takes ~40 s.
TINY_SEARCH = [
    "--num_teachers=2", "--epochs=2", "--search_epochs=1", "--trials_per_round=2",
    "--final_loss=od", "--student_loss=ce",
]


def run_search(workdir, *extra, timeout=400):
    """python -m kdas_tf.search on digits as a user runs it, from the repository root."""
    command = [sys.executable, "-m", "kdas_tf.search", "--flagfile=flags/digits.cfg", f"--workdir={workdir}",
               *TINY_SEARCH, "--verbosity=0", *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def fingerprint(root, *, skip=(), mtimes=False):
    """{path under `root`: 'folder', or its content's sha256 (as (mtime_ns, sha256) with `mtimes`)} of everything
    there but the files named in `skip`: equal fingerprints mean nothing was written, added or removed."""
    found = {}
    for parent, folders, files in os.walk(root):
        for name in folders:
            found[os.path.relpath(os.path.join(parent, name), root)] = "folder"
        for name in (name for name in files if name not in skip):
            path = os.path.join(parent, name)
            digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
            found[os.path.relpath(path, root)] = (os.stat(path).st_mtime_ns, digest) if mtimes else digest
    return found


def tiny_config(workdir, *extra):
    """The Config of run_search's command, for the Python API."""
    return config.from_args([f"--flagfile={os.path.join(ROOT, 'flags', 'digits.cfg')}", f"--workdir={workdir}",
                             *TINY_SEARCH, *extra])


# The files that take longest (seconds of one worker, whole suite on 2 cores, 2026-11-26), sent to the
# workers first: pytest-xdist hands out whole files in collection order (pyproject: --no-loadscope-reorder;
# its default sends the files with the most tests first, which left a 140-second file of one test to run
# alone at the end). Longest first keeps the last minutes to short files on both workers. Only an order:
# a file missing here runs after these, and nothing is skipped.
LONGEST_FIRST = (
    "parallel/test_parallel.py",  # 190
    "test_budget_curve.py",  # 143
    "e2e/test_kill_resume.py",  # 140
    "e2e/test_refused_rerun.py",  # 145 at load 6-8 (2026-12-03): a tiny run, then 13 reruns two at a time
    "nas/test_oracle.py",  # 118
    "e2e/test_search.py",  # 121, the first to need tiny_run makes it (90)
    "nas/test_trial_retry.py",  # 118
    "nas/test_controller.py",  # 115
    "e2e/test_bad_input.py",  # 108
    "e2e/test_refused_rerun.py",  # ~100 estimated: 145 alone on the 2 cores under a load of 7 (2026-12-03)
    "runtime/test_schema.py",  # 103
    "nas/test_tuner.py",  # 101
    "runtime/test_reliability.py",  # 98
    "distill/test_trainer.py",  # 92
    "distill/test_given_teachers.py",  # 79
    "deploy/test_litert.py",  # 73
    "distill/test_ensemble.py",  # 66
    "benchmarking/test_bench.py",  # 66
    "deploy/test_serving.py",  # 60
)


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    tests = os.path.dirname(os.path.abspath(__file__))
    items.sort(key=lambda item: rank.get(os.path.relpath(item.path, tests), len(rank)))  # stable: files keep their order


@pytest.fixture(autouse=True)
def release_work_directory_locks():
    """An in-process run holds its work directory until the process ends (kdas_tf.runtime.lock); after each test the
    session lets go, so a later test's command may use that directory as a user's next command would."""
    yield
    lock.release_all()


# Two final rows, so that which one is served is a choice (e2e/test_search.py checks it).
TINY_RUN_EXTRA = ("--final_loss=kd,od",)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, worker_id):
    """One finished tiny digits run, through the Python API, shared by the end-to-end, export, report and
    TensorBoard tests.

    Returns (workdir, the results pipeline.run returned). Tests may add files (report/, exports/)
    but must not change what the run wrote. The run is made once for all pytest-xdist workers (the first
    to need it makes it, under a file lock) and each worker gets its own copy, since tests write into it.
    """
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the directory the workers' base directories share
    made, returned = shared / "tiny_run_made", shared / "tiny_run_returned.pickle"
    with open(shared / "tiny_run.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not returned.exists():
            summary = pipeline.run(tiny_config(str(made), *TINY_RUN_EXTRA))
            lock.release(str(made))
            returned.write_bytes(pickle.dumps(summary))
    workdir = str(tmp_path_factory.mktemp("tiny_run"))
    shutil.copytree(made, workdir, dirs_exist_ok=True)
    return workdir, pickle.loads(returned.read_bytes())
