"""The chief of a parallel search: serves the KDASOracle over gRPC, runs the local workers, hears them.

KerasTuner's oracle has no notion of a worker that stops answering (keras-team/keras-tuner#915): a trial
whose worker died would stay "running" for ever and the search would never end. The chief therefore keeps
the time it last heard from each trial's worker (every gRPC call about a trial counts) and, after
--worker_timeout of silence, has the oracle take the trial back (KDASOracle.take_back).
"""

import os
import threading
import time
from concurrent import futures

import grpc
import keras_tuner
from absl import logging
from keras_tuner.engine import trial as trial_module

from kdas_tf import _internals
from kdas_tf.errors import UserError
from kdas_tf.parallel import LOCAL_PREFIX, ORACLE_IP, ORACLE_PORT, chief_address, launcher

STOP_GRACE_SECONDS = 30  # workers poll every second; this leaves time to hear STOPPED and exit


class Liveness:
    """When the chief last heard from the worker of each trial in flight."""

    def __init__(self):
        self._last_heard = {}  # trial id -> time.monotonic() of its worker's last word
        self._lock = threading.Lock()

    def heard_from(self, trial_id, now=None):
        with self._lock:
            self._last_heard[trial_id] = time.monotonic() if now is None else now

    def silent_trials(self, oracle, timeout, now=None):
        """{(tuner id, trial id): seconds} of the in-flight trials whose worker was silent for `timeout` seconds.

        A trial the chief has not heard of yet (served before a restart) starts its clock now.
        """
        now = time.monotonic() if now is None else now
        silent = {}
        with self._lock:
            for tuner_id, trial in list(oracle.ongoing_trials.items()):
                seconds = now - self._last_heard.setdefault(trial.trial_id, now)
                if seconds >= timeout:
                    silent[tuner_id, trial.trial_id] = seconds
                    del self._last_heard[trial.trial_id]
        return silent

    def requeue_silent_trials(self, oracle, timeout, now=None):
        """Take back the trials of workers silent for `timeout` seconds; returns their trial ids."""
        taken = []
        for (tuner_id, trial_id), seconds in self.silent_trials(oracle, timeout, now).items():
            if oracle.take_back(tuner_id, trial_id, f"silent for {seconds:.0f} s"):
                taken.append(trial_id)
        return taken


class ChiefServicer(_internals.OracleServicer):
    """KerasTuner's servicer; each call about a trial also counts as its worker's heartbeat."""

    def __init__(self, oracle, liveness):
        super().__init__(oracle)
        self.liveness = liveness

    def CreateTrial(self, request, context):
        trial = self.oracle.create_trial(request.tuner_id)
        if trial.status == trial_module.TrialStatus.RUNNING:
            self.liveness.heard_from(trial.trial_id)
            logging.info("trial %s to %s: %s", trial.trial_id, request.tuner_id,
                         trial.hyperparameters.values["architecture"])
        return _internals.service().CreateTrialResponse(trial=trial.to_proto())

    def UpdateTrial(self, request, context):
        self.liveness.heard_from(request.trial_id)
        return super().UpdateTrial(request, context)

    def GetTrial(self, request, context):
        self.liveness.heard_from(request.trial_id)
        return super().GetTrial(request, context)


def serve(oracle, bind, port, liveness=None):
    """Start the oracle's gRPC server on bind:port (0: a free port); returns (server, port)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    _internals.add_servicer(ChiefServicer(oracle, liveness or Liveness()), server)
    host = f"[{bind}]" if ":" in bind else bind
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise UserError(f"the chief cannot listen on {bind}:{port}: set {ORACLE_IP} to an address of this host "
                        f"and {ORACLE_PORT} to a free port")
    server.start()
    return server, bound


def open_oracle(oracle, directory, project_name):
    """Give the chief's oracle its project and resume it from its own file if there is one."""
    _internals.set_project_dir(oracle, directory, project_name)
    if os.path.exists(_internals.oracle_file(oracle)):
        oracle.reload()  # ongoing trials go back to the queue, for whichever worker asks first
    oracle.verbose = 0
    oracle.save()
    return oracle


@keras_tuner.synchronized
def _unstopped_tuners(oracle):
    return set(oracle.tuner_ids)


def run_chief(oracle, processes, *, bind, port, timeout):
    """Serve `oracle` and run the local workers until the search has finished."""
    liveness = Liveness()
    server, port = serve(oracle, bind, port, liveness)
    logging.info("chief: serving trials on %s:%d (unauthenticated gRPC: keep it on a private network)", bind, port)
    connect = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind
    for _, environment in processes.values():
        environment.update({ORACLE_IP: connect, ORACLE_PORT: str(port)})
    pool = launcher.WorkerPool(processes)
    try:
        pool.start_all()
        while not oracle.search_finished():
            liveness.requeue_silent_trials(oracle, timeout)
            if oracle.failure is not None:
                raise oracle.failure
            if not pool.poll() and not _unstopped_tuners(oracle) - set(processes):  # no remote worker either
                raise UserError("every worker stopped before the search ended: see their log lines above, "
                                "then rerun the same command to resume")
            time.sleep(launcher.POLL_SECONDS)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while (pool.poll(restart=False) or _unstopped_tuners(oracle)) and time.monotonic() < deadline:
            time.sleep(launcher.POLL_SECONDS)
    finally:
        pool.stop()
        server.stop(grace=1).wait()
    logging.info("chief: search finished, %d trials", len(oracle.trials))
    return oracle


def run(config, oracle, directory, project_name):
    """The search of `config` served to --parallel_trials local workers (and any remote ones); returns the oracle."""
    oracle = open_oracle(oracle, directory, project_name)
    if oracle.search_finished():
        return oracle
    bind, port = chief_address(os.environ)
    return run_chief(oracle, launcher.local_workers(config, LOCAL_PREFIX), bind=bind, port=port,
                     timeout=config.parallel.worker_timeout)
