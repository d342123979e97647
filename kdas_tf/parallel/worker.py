"""One worker of a parallel search: trains the trials the chief hands it until the search is over.

It builds the same KDASTuner as a search in one process, around KerasTuner's client to the chief (a
placeholder Oracle names the objective; the chief holds the real one). It heartbeats during each trial,
never waits long on the chief, and dies with the launcher that started it.
"""

import ctypes
import os
import signal
import threading
import time

import grpc
import keras_tuner
from absl import logging

from kdas_tf import _internals, assembly
from kdas_tf.errors import UserError
from kdas_tf.nas.oracle import OBJECTIVE
from kdas_tf.nas.tuner import KDASTuner
from kdas_tf.parallel import EXIT_CHIEF_GONE, LAUNCHER_PID, ORACLE_IP, ORACLE_PORT, TUNER_ID
from kdas_tf.runtime import distribute
from kdas_tf.runtime.workdir import Workdir

PR_SET_PDEATHSIG = 1


def die_with_launcher():
    """A worker started by a launcher dies with it (Linux), so a killed chief leaves no orphans."""
    launcher = os.environ.get(LAUNCHER_PID)
    if not launcher:
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux: the deadlines on the chief's calls still end this worker
    if os.getppid() != int(launcher):
        os._exit(EXIT_CHIEF_GONE)  # the launcher died before the signal was armed


def tag_log_lines(tuner_id):
    """Prefix this process's log lines with its tuner id, so interleaved workers stay readable."""

    def tag(record):
        record.msg = f"[{tuner_id}] {record.msg}"
        return True

    logging.get_absl_handler().addFilter(tag)


def wait_for_chief(seconds):
    """Block until the chief at KerasTuner's address answers (it serves once the teachers exist)."""
    address = f"{os.environ[ORACLE_IP]}:{os.environ[ORACLE_PORT]}"
    with grpc.insecure_channel(address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=seconds)
        except grpc.FutureTimeoutError:
            raise UserError(f"no chief answered at {address} within {seconds} s: start the chief first, "
                               f"or fix {ORACLE_IP}/{ORACLE_PORT}") from None


class Heartbeat:
    """Tells the chief every `interval` s that a trial is still trained; exits the process
    once the chief has not answered for `patience` s (its trial is re-queued by then)."""

    def __init__(self, ping, *, interval, patience):
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ping, interval, patience), daemon=True)
        self._thread.start()

    def _run(self, ping, interval, patience):
        answered = time.monotonic()
        while not self._stopped.wait(interval):
            try:
                ping()
                answered = time.monotonic()
            except grpc.RpcError as error:
                if time.monotonic() - answered >= patience:
                    logging.error("the chief has not answered for %.0f s (%s): this worker stops",
                                  time.monotonic() - answered, error.code())
                    os._exit(EXIT_CHIEF_GONE)

    def stop(self):
        self._stopped.set()
        self._thread.join()


class WorkerTuner(KDASTuner):
    """A KDASTuner in a worker process: heartbeats during each trial, never waits long on the chief."""

    def __init__(self, oracle, *, timeout, **kwargs):
        super().__init__(oracle, **kwargs)
        self.timeout = timeout
        _internals.set_call_deadline(self.oracle, timeout / 2)
        self._heartbeat = None

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._heartbeat = Heartbeat(lambda: self.oracle.get_trial(trial.trial_id),
                                    interval=min(30.0, self.timeout / 6), patience=self.timeout / 2)

    def on_trial_end(self, trial):
        self._heartbeat.stop()
        super().on_trial_end(trial)


def run(config):
    """Train the trials of the chief at KerasTuner's address until it says the search is over."""
    die_with_launcher()
    tag_log_lines(os.environ[TUNER_ID])
    with assembly.building(config):  # candidates built as the chief's would be (precision, BatchNorm)
        _train_trials(config)


def _train_trials(config):
    dataset = assembly.load_data(config)
    workdir = Workdir(config.workdir, config.teacher_workdir)
    # Under its chief's claim (the chief holds the directory; see Workdir.claim): refuses a worker started with
    # other settings than its chief's, and writes nothing the chief owns.
    workdir.claim(assembly.run_settings(config, dataset), config.unrecorded_settings(), owner=False)
    strategy = distribute.make_strategy(config.run.strategy, tpu=config.run.tpu)
    wait_for_chief(_internals.CHIEF_WAIT_SECONDS)  # the chief serves once the teachers exist
    teacher = None
    if config.search.search_loss != "ce":
        teacher = assembly.load_teachers(config, dataset, workdir, strategy)
    targets = assembly.targets_for(config, workdir, teacher, config.search.search_loss, dataset)
    # KerasTuner's OracleClient answers max_trials from this local oracle, not the chief's: the search's size,
    # so that the worker's 'trial i (i+1/N, ...)' lines and search ETA count the whole search.
    placeholder = keras_tuner.Oracle(objective=keras_tuner.Objective(OBJECTIVE, "max"),
                                     max_trials=config.search.num_trials())
    tuner = assembly.build_tuner(config, placeholder, dataset, strategy, targets, workdir, WorkerTuner,
                                 timeout=config.parallel.worker_timeout)
    try:
        tuner.search()
    except grpc.RpcError as error:
        raise UserError(f"the chief stopped answering ({error.code()}): the search ended or the chief died; "
                        "rerun the chief's command to resume") from None
