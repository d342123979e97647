"""Parallel trials on KerasTuner's distributed mode: one chief oracle, worker processes pulling trials.

Roles come from KerasTuner's own variables, so the same command runs on every host:
- chief: no KERASTUNER_TUNER_ID (or one containing "chief"). It trains the teachers, serves the
  KDASOracle over gRPC on KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT (default 127.0.0.1 and a
  free port: the port is unauthenticated), starts --parallel_trials local workers, and does the
  final trainings once the search ends.
- worker host: KERASTUNER_TUNER_ID=NAME with the chief's address: starts --parallel_trials
  workers NAME-0, NAME-1, ... that pull trials from that chief.
- worker (--worker, set by the launchers): one process training the trials the chief hands it.

What KerasTuner lacks, and how it is made up for here (kdas_tf code, site-packages untouched):
- Device pinning: each local worker gets its own GPU (CUDA_VISIBLE_DEVICES) or, on a CPU host,
  its share of the cores as TensorFlow thread pools (--cpu_threads).
- A killed worker (keras-team/keras-tuner#915): the launcher sees the process die and starts it
  again under the same tuner id; KerasTuner hands an ongoing trial back to the tuner id that holds
  it, and the trial resumes from its per-epoch checkpoint. A worker that vanishes without a
  launcher (another host) stops heartbeating: after --worker_timeout the chief re-queues its trial
  (KDASOracle.requeue_silent_trials says why re-queue rather than fail).
- Workers that hang after the chief quits (#645): every call to the chief has a deadline of half
  the timeout, and a worker whose chief stays silent that long exits; local workers also die with
  their launcher (Linux parent-death signal).
- A restarted chief (#976): the oracle is reloaded from its own file, whatever tuner files exist.
"""

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import keras_tuner
import tensorflow as tf
from absl import logging
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_chief
from keras_tuner.src.engine import trial as trial_module

from kdas_tf.tuner import KDASTuner

TUNER_ID, ORACLE_IP, ORACLE_PORT = "KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"
LAUNCHER_PID = "KDAS_TF_LAUNCHER_PID"
LOCAL_PREFIX = "worker"
POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 30  # workers poll every second; this leaves time to hear STOPPED and exit
MAX_RESTARTS = 3  # per local worker: a worker killed again and again is left to the timeout
EXIT_CHIEF_GONE = 3
PR_SET_PDEATHSIG = 1


# --- roles and devices ----------------------------------------------------------------------


def role(environ, *, worker, parallel_trials):
    """'single', 'chief', 'worker_host' or 'worker': this process's part in the search."""
    if parallel_trials < 1:
        raise ValueError(f"--parallel_trials={parallel_trials}: give the number of trials to train at once, 1 or more")
    tuner_id = environ.get(TUNER_ID, "")
    if worker or (tuner_id and "chief" not in tuner_id):
        missing = [name for name in (TUNER_ID, ORACLE_IP, ORACLE_PORT) if not environ.get(name)]
        if missing or "chief" in tuner_id:
            raise ValueError(f"a worker needs {', '.join(missing or [TUNER_ID])} set (a tuner id without 'chief' and "
                             "the chief's address): see the README's Parallel trials section")
        return "worker" if worker else "worker_host"
    return "chief" if parallel_trials > 1 or environ.get(ORACLE_IP) or environ.get(ORACLE_PORT) else "single"


def chief_address(environ):
    """(bind address, port) of the chief: KerasTuner's variables, else loopback and a free port."""
    port = environ.get(ORACLE_PORT, "0")
    if not port.isdigit():
        raise ValueError(f"{ORACLE_PORT}={port!r} is not a port number")
    return environ.get(ORACLE_IP) or "127.0.0.1", int(port)


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


def worker_processes(prefix, count, *, argv, gpus, cpu_count):
    """{tuner id: (command, environment)} of `count` local workers running this search's flags."""
    processes = {}
    for index, (environment, threads) in enumerate(worker_devices(count, gpus=gpus, cpu_count=cpu_count)):
        command = [sys.executable, "-m", "kdas_tf.search", *argv, "--worker", f"--cpu_threads={threads}"]
        processes[f"{prefix}-{index}"] = (command, environment)
    return processes


def set_cpu_threads(threads):
    """Size TensorFlow's thread pools (0: its default, all cores); before any TensorFlow op runs."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


# --- the launcher -----------------------------------------------------------------------------


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
            if code < 0 and restart and self.restarts[tuner_id] < MAX_RESTARTS:
                self.restarts[tuner_id] += 1
                logging.warning("worker %s (pid %d) was killed by signal %d: starting it again (%d of %d)",
                                tuner_id, process.pid, -code, self.restarts[tuner_id], MAX_RESTARTS)
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


def run_worker_host(processes):
    """Run this host's workers of a remote chief until each has stopped."""
    pool = WorkerPool(processes)
    try:
        pool.start_all()
        while pool.poll():
            time.sleep(POLL_SECONDS)
    finally:
        pool.stop()
    failed = {tuner_id: code for tuner_id, code in pool.exit_codes.items() if code}
    if failed:
        raise RuntimeError(f"workers stopped with errors {failed}: see their log lines above")


# --- the chief ------------------------------------------------------------------------------------


class ChiefServicer(oracle_chief.OracleServicer):
    """KerasTuner's servicer; each call about a trial also counts as its worker's heartbeat."""

    def CreateTrial(self, request, context):
        trial = self.oracle.create_trial(request.tuner_id)
        if trial.status == trial_module.TrialStatus.RUNNING:
            logging.info("trial %s to %s: %s", trial.trial_id, request.tuner_id,
                         trial.hyperparameters.values["architecture"])
        return protos.get_service().CreateTrialResponse(trial=trial.to_proto())

    def UpdateTrial(self, request, context):
        self.oracle.heard_from(request.trial_id)
        return super().UpdateTrial(request, context)

    def GetTrial(self, request, context):
        self.oracle.heard_from(request.trial_id)
        return super().GetTrial(request, context)


def serve(oracle, bind, port):
    """Start the oracle's gRPC server on bind:port (0: a free port); returns (server, port)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    protos.get_service_grpc().add_OracleServicer_to_server(ChiefServicer(oracle), server)
    host = f"[{bind}]" if ":" in bind else bind
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise RuntimeError(f"the chief cannot listen on {bind}:{port}: set {ORACLE_IP} to an address of this host "
                           f"and {ORACLE_PORT} to a free port")
    server.start()
    return server, bound


def open_oracle(oracle, directory, project_name):
    """Give the chief's oracle its project and resume it from its own file if there is one."""
    oracle._set_project_dir(directory, project_name)
    if os.path.exists(oracle._get_oracle_fname()):
        oracle.reload()  # ongoing trials go back to the queue, for whichever worker asks first
    oracle.verbose = 0
    oracle.save()
    return oracle


@keras_tuner.synchronized
def _unstopped_tuners(oracle):
    return set(oracle.tuner_ids)


def run_chief(oracle, processes, *, bind, port, timeout):
    """Serve `oracle` and run the local workers until the search has finished."""
    server, port = serve(oracle, bind, port)
    logging.info("chief: serving trials on %s:%d (unauthenticated gRPC: keep it on a private network)", bind, port)
    connect = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind
    for _, environment in processes.values():
        environment.update({ORACLE_IP: connect, ORACLE_PORT: str(port)})
    pool = WorkerPool(processes)
    try:
        pool.start_all()
        while not oracle.search_finished():
            oracle.requeue_silent_trials(timeout)
            if oracle.failure is not None:
                raise oracle.failure
            if not pool.poll() and not _unstopped_tuners(oracle) - set(processes):  # no remote worker either
                raise RuntimeError("every worker stopped before the search ended: see their log lines above, "
                                   "then rerun the same command to resume")
            time.sleep(POLL_SECONDS)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while (pool.poll(restart=False) or _unstopped_tuners(oracle)) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
    finally:
        pool.stop()
        server.stop(grace=1).wait()
    logging.info("chief: search finished, %d trials", len(oracle.trials))
    return oracle


# --- a worker -------------------------------------------------------------------------------------


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
            raise RuntimeError(f"no chief answered at {address} within {seconds} s: start the chief first, "
                               f"or fix {ORACLE_IP}/{ORACLE_PORT}") from None


class _Deadline:
    """The chief's stub with one deadline on every call (KerasTuner waits up to an hour)."""

    def __init__(self, stub, seconds):
        self._stub = stub
        self._seconds = seconds

    def __getattr__(self, name):
        method = getattr(self._stub, name)

        def call(request, **kwargs):
            return method(request, **{**kwargs, "timeout": self._seconds})

        return call


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
        self.oracle.stub = _Deadline(self.oracle.stub, timeout / 2)
        self._heartbeat = None

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._heartbeat = Heartbeat(lambda: self.oracle.get_trial(trial.trial_id),
                                    interval=min(30.0, self.timeout / 6), patience=self.timeout / 2)

    def on_trial_end(self, trial):
        self._heartbeat.stop()
        super().on_trial_end(trial)
