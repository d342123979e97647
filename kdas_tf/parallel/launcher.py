"""Local worker processes of a parallel search: their devices, starting them, restarting killed ones.

The chief starts --parallel_trials workers on its own host; a worker host (KERASTUNER_TUNER_ID set, no
--worker) starts as many for a remote chief. Each worker is `python -m kdas_tf.search` with the run's
config as flags (config.to_flags) and --worker.
"""

import os
import signal
import subprocess
import sys
import time

import tensorflow as tf
from absl import logging

from kdas_tf import config as config_lib
from kdas_tf.errors import UserError
from kdas_tf.parallel import LAUNCHER_PID, TUNER_ID

POLL_SECONDS = 0.5
MAX_RESTARTS = 3  # per local worker: a worker killed again and again is left to the timeout
# A worker stopped by SIGINT or SIGTERM exits with 128 + the signal (cli.run): killed all the same.
STOPPED_EXIT_CODES = (128 + signal.SIGINT, 128 + signal.SIGTERM)


def worker_devices(count, *, gpus, cpu_count):
    """Per local worker, its environment and TensorFlow thread count.

    `gpus`: the GPU ids this host may use (its CUDA_VISIBLE_DEVICES entries, or 0..n-1).
    One GPU per worker, round robin (workers sharing a GPU grow their memory instead of
    taking it all); without GPUs, an equal share of the cores.
    """
    if gpus:
        shared = count > len(gpus)
        return [({"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)], **({"TF_FORCE_GPU_ALLOW_GROWTH": "true"} if shared else {})},
                 0) for i in range(count)]
    return [({}, max(1, cpu_count // count)) for _ in range(count)]


def share_gpus_with_workers():
    """The chief trains teachers and final models on the workers' GPUs: take memory as needed, not all of it.

    Must run before TensorFlow initialises its GPUs.
    """
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)


def worker_processes(prefix, count, *, flags, gpus, cpu_count):
    """{tuner id: (command, environment)} of `count` local workers running a search with `flags`."""
    processes = {}
    for index, (environment, threads) in enumerate(worker_devices(count, gpus=gpus, cpu_count=cpu_count)):
        command = [sys.executable, "-m", "kdas_tf.search", *flags, f"--verbosity={logging.get_verbosity()}",
                   "--worker", f"--cpu_threads={threads}"]
        processes[f"{prefix}-{index}"] = (command, environment)
    return processes


def local_workers(config, prefix):
    """This host's --parallel_trials workers of the search `config` describes, named PREFIX-0, PREFIX-1, ..."""
    return worker_processes(prefix, config.parallel.parallel_trials, flags=config_lib.to_flags(config, config_lib.SEARCH_SECTIONS),
                            gpus=gpu_ids(), cpu_count=len(os.sched_getaffinity(0)))


def gpu_ids():
    """The GPUs this host may give its workers: CUDA_VISIBLE_DEVICES's entries, else 0..n-1."""
    count = len(tf.config.list_physical_devices("GPU"))
    visible = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return (visible or [str(i) for i in range(count)])[:count]


def set_cpu_threads(threads):
    """Size TensorFlow's thread pools (0: its default, all cores); before any TensorFlow op runs."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


class WorkerPool:
    """Local worker processes. One killed by a signal starts again under its tuner id, so the chief
    hands it back its trial; one that exits with an error stays down (errors repeat)."""

    def __init__(self, processes):
        self.processes = processes  # tuner id -> (command, environment)
        self.running = {}
        self.restarts = dict.fromkeys(processes, 0)
        self.exit_codes = {}

    def start(self, tuner_id):
        command, environment = self.processes[tuner_id]
        env = {**os.environ, **environment, TUNER_ID: tuner_id, LAUNCHER_PID: str(os.getpid())}
        process = subprocess.Popen(command, env=env)
        self.running[tuner_id] = process
        logging.info("worker %s started (pid %d)", tuner_id, process.pid)

    def start_all(self):
        for tuner_id in self.processes:
            self.start(tuner_id)

    def poll(self, restart=True):
        """Notice exited workers, restart killed ones; returns the tuner ids still running."""
        for tuner_id, process in list(self.running.items()):
            code = process.poll()
            if code is None:
                continue
            del self.running[tuner_id]
            signum = -code if code < 0 else code - 128 if code in STOPPED_EXIT_CODES else 0
            if signum and restart and self.restarts[tuner_id] < MAX_RESTARTS:
                self.restarts[tuner_id] += 1
                logging.warning("worker %s (pid %d) was killed by signal %d: starting it again (%d of %d)",
                                tuner_id, process.pid, signum, self.restarts[tuner_id], MAX_RESTARTS)
                self.start(tuner_id)
                continue
            self.exit_codes[tuner_id] = code
            if code:
                logging.warning("worker %s (pid %d) stopped with exit code %d", tuner_id, process.pid, code)
        return set(self.running)

    def stop(self):
        """Terminate the workers still running (the search is over or the chief is stopping)."""
        for process in self.running.values():
            process.terminate()
        for process in self.running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.running = {}


def run_worker_host(config):
    """Run this host's workers of a remote chief (KERASTUNER_TUNER_ID names them) until each has stopped."""
    pool = WorkerPool(local_workers(config, os.environ[TUNER_ID]))
    try:
        pool.start_all()
        while pool.poll():
            time.sleep(POLL_SECONDS)
    finally:
        pool.stop()
    failed = {tuner_id: code for tuner_id, code in pool.exit_codes.items() if code}
    if failed:
        raise UserError(f"workers stopped with errors {failed}: see their log lines above")
