"""Parallel trials on KerasTuner's distributed mode: one chief oracle, worker processes pulling trials.

Roles come from KerasTuner's own variables, so the same command runs on every host:
- chief (chief.py): no KERASTUNER_TUNER_ID (or one containing "chief"). It trains the teachers, serves
  the KDASOracle over gRPC on KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT (default 127.0.0.1 and a
  free port: the port is unauthenticated), starts --parallel_trials local workers, and does the final
  trainings once the search ends.
- worker host (launcher.py): KERASTUNER_TUNER_ID=NAME with the chief's address: starts
  --parallel_trials workers NAME-0, NAME-1, ... that pull trials from that chief.
- worker (worker.py; --worker, set by the launchers): one process training the trials the chief hands it.

What KerasTuner lacks, and how it is made up for here (kdas_tf code, site-packages untouched):
- Device pinning: each local worker gets its own GPU (CUDA_VISIBLE_DEVICES) or, on a CPU host, its
  share of the cores as TensorFlow thread pools (--cpu_threads).
- A killed worker (keras-team/keras-tuner#915): the launcher sees the process die and starts it again
  under the same tuner id; KerasTuner hands an ongoing trial back to the tuner id that holds it, and the
  trial resumes from its per-epoch checkpoint. A worker that vanishes without a launcher (another host)
  stops heartbeating: after --worker_timeout the chief takes its trial back (KDASOracle.take_back).
- Workers that hang after the chief quits (#645): every call to the chief has a deadline of half the
  timeout, and a worker whose chief stays silent that long exits; local workers also die with their
  launcher (Linux parent-death signal).
- A restarted chief (#976): the oracle is reloaded from its own file, whatever tuner files exist.
"""

from kdas_tf.errors import UserError

TUNER_ID, ORACLE_IP, ORACLE_PORT = "KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"
LAUNCHER_PID = "KDAS_TF_LAUNCHER_PID"
LOCAL_PREFIX = "worker"
EXIT_CHIEF_GONE = 3


def role(environ, *, worker, parallel_trials):
    """'single', 'chief', 'worker_host' or 'worker': this process's part in the search."""
    tuner_id = environ.get(TUNER_ID, "")
    if worker or (tuner_id and "chief" not in tuner_id):
        missing = [name for name in (TUNER_ID, ORACLE_IP, ORACLE_PORT) if not environ.get(name)]
        if missing or "chief" in tuner_id:
            raise UserError(f"a worker needs {', '.join(missing or [TUNER_ID])} set (a tuner id without 'chief' "
                            "and the chief's address): see the README's Parallel trials section")
        return "worker" if worker else "worker_host"
    return "chief" if parallel_trials > 1 or environ.get(ORACLE_IP) or environ.get(ORACLE_PORT) else "single"


def chief_address(environ):
    """(bind address, port) of the chief: KerasTuner's variables, else loopback and a free port."""
    port = environ.get(ORACLE_PORT, "0")
    if not port.isdigit():
        raise UserError(f"{ORACLE_PORT}={port!r} is not a port number")
    return environ.get(ORACLE_IP) or "127.0.0.1", int(port)
