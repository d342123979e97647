"""Every use of KerasTuner's and TensorFlow's private internals, each with the reason it exists.

They were written against keras-tuner 1.4.8 and TensorFlow 2.21 (pyproject.toml bounds both); when
either moves, this module is the one to read again. Nothing else in kdas_tf reaches into `keras_tuner.src`,
a private attribute of KerasTuner's classes or TensorFlow's `python.framework`.
"""

import os

from keras_tuner.src import config as keras_tuner_config
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_chief, oracle_client

from kdas_tf.runtime import storage

# --- KerasTuner's Oracle ---------------------------------------------------------------------------


class OracleInternals:
    """Mixin for a keras_tuner.Oracle subclass, overriding two private methods.

    `_save_trial`: KerasTuner writes trial.json in place; a kill mid-write would leave a trial that no
    resume can read, so it is written atomically here.
    `_check_consecutive_failures`: KerasTuner's error ends with the last trial's whole traceback; the
    subclass's `too_many_failures()` gives the one line that says what to do.
    """

    def _save_trial(self, trial):
        storage.write_json(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())

    def _check_consecutive_failures(self):
        try:
            super()._check_consecutive_failures()
        except RuntimeError:
            raise self.too_many_failures() from None


def quiet_failed_trials():
    """Stop KerasTuner printing the whole traceback of every failed trial to stderr (its DEBUG switch, on by
    default, has no public setter): trial.json keeps it as the trial's message, and KDASTuner logs its reason
    in one line."""
    keras_tuner_config.DEBUG = False


def retry_queue(oracle):
    """The trial ids KerasTuner will hand out again (a list, changed in place).

    No public call re-queues a trial whose worker died (keras-team/keras-tuner#915), and a resumed
    search must drop ids that already ended (a kill between two saves).
    """
    return oracle._retry_queue


def save_trial(oracle, trial):
    """Write one trial's file: a trial the chief takes back from a silent worker ends outside end_trial."""
    oracle._save_trial(trial)


def trial_dir(oracle, trial_id):
    return oracle._get_trial_dir(trial_id)


def oracle_file(oracle):
    """The oracle's state file, which exists once the oracle has been saved (its project is set)."""
    return oracle._get_oracle_fname()


def project_dir(oracle):
    return oracle._project_dir


def set_project_dir(oracle, directory, project_name):
    """Give an oracle its project without a Tuner: the parallel chief serves an oracle no tuner owns
    (KerasTuner's chief does it from its own tuner, keras-team/keras-tuner#976)."""
    oracle._set_project_dir(directory, project_name)


def tuner_file(tuner):
    """The tuner's state file (KerasTuner's, `{}` for ours), which KerasTuner reloads after the oracle."""
    return tuner._get_tuner_fname()


def is_worker(tuner):
    """Whether this tuner pulls trials from a remote chief (KerasTuner's own test, by its environment)."""
    return tuner._is_worker()


# --- KerasTuner's gRPC service -----------------------------------------------------------------------

# The servicer the chief extends: every trial call doubles as its worker's heartbeat.
OracleServicer = oracle_chief.OracleServicer
# How long KerasTuner's client waits for a chief: a worker waits as long for the chief to start serving.
CHIEF_WAIT_SECONDS = oracle_client.TIMEOUT


def service():
    """The Oracle service's message classes (CreateTrialResponse, ...)."""
    return protos.get_service()


def add_servicer(servicer, server):
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)


class _Deadline:
    """The chief's stub with one deadline on every call (KerasTuner waits up to an hour, #645)."""

    def __init__(self, stub, seconds):
        self._stub = stub
        self._seconds = seconds

    def __getattr__(self, name):
        method = getattr(self._stub, name)

        def call(request, **kwargs):
            return method(request, **{**kwargs, "timeout": self._seconds})

        return call


def set_call_deadline(client, seconds):
    """Give every call of KerasTuner's OracleClient `client` a deadline: its `stub` has no public setter."""
    client.stub = _Deadline(client.stub, seconds)


# --- TensorFlow ----------------------------------------------------------------------------------------


def without_retracing_warning(function):
    """`function`, a tf.function with an input signature made for one Trainer, without TensorFlow's
    frequent-retracing warning, which has no public switch: TensorFlow counts the traces of every Trainer's
    function of the same code together, so each new trainer's one trace counted as a retrace of the last
    one's ("5 out of the last 13 calls ... triggered tf.function retracing"). The signature rules out real ones."""
    function._omit_frequent_tracing_warning = True
    return function


def release_traced_steps():
    """Let the compiled steps of finished trainings be freed; call between networks (search trials).

    Tracing a training step under tf.distribute registers a gradient named
    "CustomGradient-<uid>" in TensorFlow's process-wide gradient registry for
    each gradient all-reduce (Keras' optimizer calls ReplicaContext.all_reduce,
    a tf.custom_gradient). The registry is never pruned, and each entry holds
    its whole traced step: about 10 MB per trained network, so a search grows
    without bound (tensorflow/tensorflow#62854 reports the growth). The entries
    are needed only while a step is traced, so dropping them between trainings
    is safe. The registry has no public API.
    """
    from tensorflow.python.framework import ops

    registry = ops._gradient_registry._registry  # pylint: disable=protected-access
    for name in [name for name in registry if name.startswith("CustomGradient-")]:
        del registry[name]
