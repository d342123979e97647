"""SIGKILL at several points of a digits search, then the same command: nothing lost, nothing twice.

Each run is a real subprocess killed with SIGKILL as soon as its log shows it
reached a given point (bounded by a timeout); the last run finishes, and the
work directory must read as if the search had never been interrupted.
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

TRIALS = 3
FLAGS = [
    "--flagfile=flags/digits.cfg", "--num_teachers=2", "--epochs=3", "--search_epochs=2",
    f"--trials_per_round={TRIALS}", "--final_loss=od", "--student_loss=ce", "--verbosity=0",
]


def command(workdir):
    return [sys.executable, "-m", "kdas_tf.search", *FLAGS, f"--workdir={workdir}"]  # after the flagfile: overrides it


def run_until(workdir, marker, timeout=240):
    """Start the search and SIGKILL it when a log line contains `marker`; returns the log."""
    process = subprocess.Popen(command(workdir), cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.time() + timeout
    lines = []
    try:
        for line in process.stderr:
            lines.append(line)
            if marker in line:
                process.send_signal(signal.SIGKILL)
                break
            if time.time() > deadline:
                break
    finally:
        process.kill()
        process.wait()
    log = "".join(lines)
    assert marker in log, f"never reached {marker!r}:\n{log[-3000:]}"
    return log


def trial_files(workdir):
    return sorted(glob.glob(os.path.join(workdir, "search", "trial_*", "trial.json")))


def test_kill_at_every_stage_then_resume_loses_nothing(tmp_path):
    workdir = str(tmp_path)
    # during teacher training: member 0 finished, member 1 mid-way
    log = run_until(workdir, "teacher 1 epoch 2/")
    # progress a person can follow in a log file: the step, the run's ETA, no bar (stderr is a pipe)
    assert "step 1/4: teachers, 6 epochs to train; run ETA after the first epoch" in log
    assert re.search(r"teacher 0 epoch 1/3 .* ETA \d+m\d\ds  \(run ETA \d+m\d\ds\)", log)
    assert "\r" not in log
    assert os.path.exists(os.path.join(workdir, "teachers", "member_0", "model.keras"))
    member0 = os.stat(os.path.join(workdir, "teachers", "member_0", "model.keras")).st_mtime_ns

    # mid-trial: the second trial has a checkpoint of its first epoch
    log = run_until(workdir, "trial 1 epoch 1/")
    assert "teacher 0 epoch" not in log and "resumed from" in log  # member 1 resumed, member 0 reused
    assert "step 1/4: teachers, 3 epochs to train" in log  # member 0 is finished: member 1 is left
    assert re.search(r"trial 0 \(1/3, round 1/1\): resnet8:.* 2 epochs; search ETA after the first trial", log)
    assert re.search(r"trial 1 \(2/3, round 1/1\): .*; search ETA \d+m\d\ds", log)

    # the interrupted trial resumes from its checkpoint; kill between trials this time
    log = run_until(workdir, f"trial {TRIALS - 1} epoch 1/")
    assert "trial 1: resumed from" in log and "trial 1 epoch 1/" not in log

    # during the final training
    run_until(workdir, "kdas od epoch 2/")

    finished = subprocess.run(command(workdir), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]

    assert os.stat(os.path.join(workdir, "teachers", "member_0", "model.keras")).st_mtime_ns == member0
    trials = [json.load(open(path)) for path in trial_files(workdir)]
    assert [t["trial_id"] for t in trials] == [str(i) for i in range(TRIALS)]
    assert all(t["status"] == "COMPLETED" for t in trials)
    oracle = json.load(open(os.path.join(workdir, "search", "oracle.json")))
    assert oracle["kdas"]["trial_updates"] == TRIALS  # the controller saw each trial exactly once
    assert sorted(oracle["end_order"]) == [str(i) for i in range(TRIALS)]
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert len(results["trials"]) == TRIALS and results["controller"]["trial_updates"] == TRIALS
    assert "kdas od: resumed from" in finished.stderr  # the final training continued, not restarted
    # nothing left but the found model's row (its checkpoint gives back what it holds), then the export
    assert "step 2/4: search, 0 epochs to train" in finished.stderr
    assert "step 3/4: final rows, 3 epochs to train" in finished.stderr
    assert "step 4/4: export, 0 epochs to train" in finished.stderr
    assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
