"""Parallel trials: the chief oracle with several trials in flight, and a real two-worker digits search.

The first tests drive KDASOracle as the gRPC servicer would, for several tuner ids at
once (no training). The last one runs `python -m kdas_tf.search --parallel_trials=2`
as subprocesses: it checks the chief's port is on 127.0.0.1, SIGKILLs a worker mid-trial,
then SIGKILLs the chief, reruns the same command, and requires every trial recorded once.
"""

import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest
from keras_tuner.engine import trial as trial_module
from keras_tuner.src.distribute import oracle_client  # the client a worker uses, built as KerasTuner builds it

from kdas_tf import _internals, config, models, parallel
from kdas_tf.errors import UserError
from kdas_tf.nas.oracle import MAX_TRIAL_LOSSES, KDASOracle
from kdas_tf.parallel import chief, launcher
from kdas_tf.nas.tuner import KDASTuner
from conftest import ROOT

INPUT = dict(num_classes=10, input_shape=(8, 8, 1))
RUNNING, IDLE, STOPPED = (trial_module.TrialStatus.RUNNING, trial_module.TrialStatus.IDLE,
                          trial_module.TrialStatus.STOPPED)


def make_oracle(directory, trials_per_round=4):
    # A budget far above any sample: every sample is trained, so every update is a trial's.
    oracle = KDASOracle(backbone="resnet8", budget=100 * models.count_parameters("resnet8", **INPUT),
                        trials_per_round=trials_per_round, seed=0, **INPUT)
    _internals.set_project_dir(oracle, str(directory), "search")
    oracle.verbose = 0
    return oracle


def report(oracle, trial, score):
    """What a worker does when its trial ends, on its own copy of the trial (as over gRPC)."""
    copy = trial_module.Trial.from_proto(trial.to_proto())
    oracle.update_trial(copy.trial_id, {"val_top1": score})
    copy.status = trial_module.TrialStatus.COMPLETED
    oracle.end_trial(copy)


def spy_on_updates(oracle):
    updates = []
    update = oracle.controller.update

    def recorded(tokens, reward):
        updates.append((tuple(int(t) for t in tokens), float(reward)))
        return update(tokens, reward)

    oracle.controller.update = recorded
    return updates


def test_with_trials_in_flight_each_finished_trial_teaches_the_controller_once_with_its_own_sample(tmp_path):
    oracle = make_oracle(tmp_path, trials_per_round=6)
    updates = spy_on_updates(oracle)
    scores = {}
    first = {w: oracle.create_trial(w) for w in ("w0", "w1", "w2")}  # three samples drawn before any reward
    expected = []
    for worker, score in (("w2", 0.3), ("w0", 0.7)):  # they finish out of order
        report(oracle, first[worker], score)
        expected.append((oracle.tokens_of(first[worker].hyperparameters.values), score))
    second = {w: oracle.create_trial(w) for w in ("w0", "w2")}  # sampled from the updated policy
    for trial, score in ((second["w2"], 0.9), (first["w1"], 0.2), (second["w0"], 0.5)):
        report(oracle, trial, score)
        expected.append((oracle.tokens_of(trial.hyperparameters.values), score))
        scores[trial.trial_id] = score
    assert updates == expected  # one update per finished trial, its own tokens, in the order trials ended
    assert oracle.trial_updates == len(oracle.end_order) == 5
    decay = oracle.controller.config.baseline_decay
    baseline = None  # float64 reference: exponential moving average over the finished trials' rewards
    for _, reward in expected:
        baseline = reward if baseline is None else decay * baseline + (1 - decay) * reward
    assert oracle.controller.baseline == pytest.approx(baseline, abs=1e-12)


def test_a_worker_is_told_to_stop_only_once_no_trial_is_in_flight(tmp_path):
    oracle = make_oracle(tmp_path, trials_per_round=2)
    t0, t1 = oracle.create_trial("w0"), oracle.create_trial("w1")
    report(oracle, t0, 0.5)
    assert oracle.create_trial("w0").status == IDLE  # trial 1 could still be lost and re-queued
    assert not oracle.search_finished()
    report(oracle, t1, 0.6)
    assert oracle.search_finished()
    assert oracle.create_trial("w0").status == STOPPED and oracle.create_trial("w1").status == STOPPED


def test_a_silent_workers_trial_is_requeued_and_recorded_once(tmp_path):
    oracle = make_oracle(tmp_path, trials_per_round=2)
    t0, t1 = oracle.create_trial("w0"), oracle.create_trial("w1")
    liveness, start = chief.Liveness(), 1000.0  # the clock is the test's: no timing on a loaded machine
    liveness.heard_from(t0.trial_id, now=start)
    liveness.heard_from(t1.trial_id, now=start + 8)  # w1 heartbeats, w0 has vanished
    assert liveness.requeue_silent_trials(oracle, 10, now=start + 9) == []
    assert liveness.requeue_silent_trials(oracle, 10, now=start + 11) == [t0.trial_id]
    again = oracle.create_trial("w2")
    assert again.trial_id == t0.trial_id and again.hyperparameters.values == t0.hyperparameters.values
    report(oracle, again, 0.4)
    report(oracle, t0, 0.9)  # w0 was only cut off: its late report must not count twice
    report(oracle, t1, 0.6)
    assert oracle.end_order == [t0.trial_id, t1.trial_id] and oracle.trial_updates == 2
    assert oracle.trials[t0.trial_id].score == 0.4
    assert oracle.trial_tuners == {t0.trial_id: "w2", t1.trial_id: "w1"}
    assert oracle.search_finished()


def test_a_trial_lost_again_and_again_is_recorded_failed_without_a_reward(tmp_path):
    oracle = make_oracle(tmp_path, trials_per_round=2)
    trial = oracle.create_trial("w0")
    updates = spy_on_updates(oracle)
    liveness = chief.Liveness()
    for loss in range(MAX_TRIAL_LOSSES):
        assert oracle.create_trial(f"w{loss}").trial_id == trial.trial_id
        liveness.heard_from(trial.trial_id, now=100.0 * loss)
        liveness.requeue_silent_trials(oracle, 10, now=100.0 * loss + 11)
    assert oracle.trials[trial.trial_id].status == trial_module.TrialStatus.FAILED
    assert "lost with its worker" in oracle.trials[trial.trial_id].message
    assert oracle.end_order == [trial.trial_id] and not _internals.retry_queue(oracle)
    assert updates == [] and oracle.trial_updates == 0


def test_too_many_failed_trials_stop_the_search_without_locking_the_oracle(tmp_path):
    oracle = make_oracle(tmp_path, trials_per_round=6)
    trials = [oracle.create_trial(f"w{i}") for i in range(3)]
    for index, trial in enumerate(trials):
        copy = trial_module.Trial.from_proto(trial.to_proto())
        copy.status, copy.message = trial_module.TrialStatus.FAILED, "loss became nan"
        if index < 2:
            oracle.end_trial(copy)
        else:
            with pytest.raises(UserError, match="the last 3 trials failed"):
                oracle.end_trial(copy)
    assert oracle.failure is not None and not oracle.ongoing_trials  # the chief stops on it
    answered = []  # a gRPC handler thread must still get an answer, not wait forever on the lock
    asking = threading.Thread(target=lambda: answered.append(oracle.create_trial("w9")), daemon=True)
    asking.start()
    asking.join(timeout=10)
    assert answered and answered[0].trial_id == "3"


def test_a_restarted_chief_hands_the_interrupted_trials_out_again(tmp_path):
    oracle = make_oracle(tmp_path)
    t0, t1 = oracle.create_trial("w0"), oracle.create_trial("w1")
    report(oracle, t0, 0.5)
    restarted = chief.open_oracle(make_oracle(tmp_path), str(tmp_path), "search")
    assert restarted.trial_updates == 1 and not restarted.ongoing_trials
    assert restarted.create_trial("w7").trial_id == t1.trial_id  # before any new sample
    assert restarted.create_trial("w8").trial_id == "2"  # trial 0 ended: it is not handed out again


class ScoreTuner(KDASTuner):
    """The single-process tuner with training replaced by a fixed score."""

    def __init__(self, oracle, directory):
        super().__init__(oracle, dataset=None, config=None, strategy=None, directory=directory, project_name="search")

    def run_trial(self, trial, *args, **kwargs):
        return {"val_top1": 0.5}


def test_a_parallel_search_resumed_in_one_process_continues_it(tmp_path):
    served = chief.open_oracle(make_oracle(tmp_path, trials_per_round=3), str(tmp_path), "search")
    report(served, served.create_trial("worker-0"), 0.9)
    served.create_trial("worker-1")  # in flight when the chief dies
    oracle = make_oracle(tmp_path, trials_per_round=3)
    tuner = ScoreTuner(oracle, str(tmp_path))  # KerasTuner alone reloads only from tuner0.json, absent here
    tuner.oracle.verbose = 0
    tuner.search()
    assert sorted(oracle.end_order) == ["0", "1", "2"] and oracle.trial_updates == 3
    assert oracle.trials["0"].score == 0.9  # the finished trial was kept, not trained again


def test_workers_get_one_gpu_each_or_a_share_of_the_cores():
    assert launcher.worker_devices(2, gpus=[], cpu_count=8) == [({}, 4), ({}, 4)]
    pinned = launcher.worker_devices(3, gpus=["2", "5"], cpu_count=8)
    assert [env["CUDA_VISIBLE_DEVICES"] for env, _ in pinned] == ["2", "5", "2"]
    assert all(env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" for env, _ in pinned)  # two workers share GPU 2
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in launcher.worker_devices(2, gpus=["0", "1"], cpu_count=8)[0][0]


def test_roles_follow_kerastuners_variables():
    worker_env = {"KERASTUNER_TUNER_ID": "host2", "KERASTUNER_ORACLE_IP": "10.0.0.1", "KERASTUNER_ORACLE_PORT": "8000"}
    assert parallel.role({}, worker=False, parallel_trials=1) == "single"
    assert parallel.role({}, worker=False, parallel_trials=2) == "chief"
    assert parallel.role({"KERASTUNER_ORACLE_IP": "10.0.0.1"}, worker=False, parallel_trials=1) == "chief"
    assert parallel.role({"KERASTUNER_ORACLE_PORT": "8000"}, worker=False, parallel_trials=1) == "chief"
    assert parallel.role(worker_env, worker=False, parallel_trials=2) == "worker_host"
    assert parallel.role(worker_env, worker=True, parallel_trials=1) == "worker"
    with pytest.raises(ValueError, match="KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT"):
        parallel.role({"KERASTUNER_TUNER_ID": "host2"}, worker=False, parallel_trials=1)
    with pytest.raises(UserError, match="--parallel_trials=0"):
        config.ParallelConfig(parallel_trials=0)
    assert parallel.chief_address({}) == ("127.0.0.1", 0)


def test_a_worker_whose_chief_is_gone_gives_up_within_its_deadline(monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "w0")
    client = oracle_client.OracleClient(None)
    _internals.set_call_deadline(client, 1.0)  # as WorkerTuner does, with timeout/2 = 1 s
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as error:
        client.create_trial("w0")  # KerasTuner alone would wait an hour here (#645)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < 10


# --- a real parallel search ---------------------------------------------------------------------

TRIALS = 4
FLAGS = ["--flagfile=flags/digits.cfg", "--num_teachers=2", "--epochs=2", "--search_epochs=2",
         f"--trials_per_round={TRIALS}", "--final_loss=od", "--student_loss=ce", "--parallel_trials=2"]


class Run:
    """A search subprocess whose stderr (the chief's and its workers' lines) is read as it comes.

    A tripwire (pattern, action) runs in the reader the moment a line matches, so a kill lands
    before the next epoch ends (as in test_kill_resume); each fires once.
    """

    def __init__(self, workdir, tripwires):
        command = [sys.executable, "-m", "kdas_tf.search", *FLAGS, f"--workdir={workdir}"]
        self.process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines = []
        self.fired = {}
        self._tripwires = list(tripwires)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line)
            for pattern, action in list(self._tripwires):
                match = re.search(pattern, line)
                if match:
                    self._tripwires.remove((pattern, action))
                    self.fired[pattern] = action(match)

    def wait_for(self, pattern, timeout=240):
        deadline = time.time() + timeout
        while time.time() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            if not self._reader.is_alive():
                break
            time.sleep(0.2)
        raise AssertionError(f"never saw {pattern!r}:\n{self.log()[-3000:]}")

    def log(self):
        return "".join(self.lines)

    def pids(self, worker):
        return [int(pid) for pid in re.findall(rf"worker {worker} started \(pid (\d+)\)", self.log())]


def listeners(port):
    """The addresses listening on TCP `port`, from /proc/net/tcp and tcp6 (IPv4-mapped ones as IPv4)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in open(table).read().splitlines()[1:]:
            fields = row.split()
            address, hex_port = fields[1].split(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            # the kernel prints each 32-bit word of the address in host (little-endian) order
            packed = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, len(address), 8))
            ip = ipaddress.ip_address(packed)
            found.append(str(getattr(ip, "ipv4_mapped", None) or ip))
    return found


def gone(pid, timeout=15):
    """The process exited (or is a zombie) within `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(") ", 1)[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_two_workers_survive_a_killed_worker_and_a_killed_chief(tmp_path):
    workdir = str(tmp_path)
    killed = r"\[worker-1\] trial (\d+) epoch 1/2"  # mid-trial: epoch 1 of 2 is checkpointed
    resumed = r"\[worker-1\] trial (\d+): resumed from .* at epoch 1"
    run = Run(workdir, tripwires=[
        (killed, lambda m: os.kill(run.pids("worker-1")[-1], signal.SIGKILL) or m.group(1)),
        (resumed, lambda m: run.process.kill() or m.group(1)),  # the chief dies while that trial is in flight
    ])
    try:
        port = int(run.wait_for(r"chief: serving trials on 127\.0\.0\.1:(\d+)").group(1))
        assert listeners(port) == ["127.0.0.1"]  # loopback only: not 0.0.0.0, not ::
        run.wait_for(r"worker worker-1 \(pid \d+\) was killed by signal 9: starting it again")
        run.wait_for(resumed)
        run.process.wait(timeout=30)
        assert run.fired[killed] == run.fired[resumed]  # the restarted worker got its own trial back
        assert all(gone(pid) for pid in run.pids("worker-0") + run.pids("worker-1"))  # no orphans
    finally:
        run.process.kill()
        run.process.wait()
    trial = run.fired[resumed]
    state = json.load(open(os.path.join(workdir, "search", "oracle.json")))
    assert state["ongoing_trials"].get("worker-1") == trial and len(run.pids("worker-1")) == 2

    again = subprocess.run([sys.executable, "-m", "kdas_tf.search", *FLAGS, f"--workdir={workdir}"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "teacher 0 epoch" not in again.stderr
    assert re.search(rf"\[worker-\d\] trial {trial}: resumed from .* at epoch 1", again.stderr)

    trials = [json.load(open(os.path.join(workdir, "search", f"trial_{i}", "trial.json"))) for i in range(TRIALS)]
    assert all(t["status"] == "COMPLETED" for t in trials)
    assert not os.path.exists(os.path.join(workdir, "search", f"trial_{TRIALS}"))
    oracle = json.load(open(os.path.join(workdir, "search", "oracle.json")))
    assert sorted(oracle["end_order"]) == [str(i) for i in range(TRIALS)]  # every trial ended exactly once
    assert oracle["kdas"]["trial_updates"] == TRIALS  # and taught the controller exactly once
    assert oracle["ongoing_trials"] == {} and oracle["retry_queue"] == []
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert [t["trial_id"] for t in results["trials"]] == [str(i) for i in range(TRIALS)]
    assert {t["tuner_id"] for t in results["trials"]} <= {"worker-0", "worker-1"}
    assert results["controller"]["trial_updates"] == TRIALS
    assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
    assert "Traceback" not in run.log() + again.stderr
    # a worker counts the whole search in its progress lines ('trial 2 (3/4, round 1/1)'), not its own share
    assert set(re.findall(r"\[worker-\d\] trial \d+ \(\d+/(\d+), round", run.log() + again.stderr)) == {str(TRIALS)}
