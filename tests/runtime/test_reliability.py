"""What a user sees when something other than the run goes wrong: a second process on the work directory, a
killed one, an unwritable or full disk, Ctrl-C or SIGTERM. Each ends in one line and loses no finished work.

The commands are python -m kdas_tf.train on digits with resnet8 (a few seconds of training); mounts (a
read-only bind mount, a tiny tmpfs) need root and are skipped without it.
"""

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from kdas_tf import config, data, pipeline
from kdas_tf.runtime import lock, storage
from kdas_tf.parallel import launcher
from kdas_tf.errors import UserError
from kdas_tf.runtime.workdir import Workdir, check_writable
from conftest import ROOT

TRAIN = ["--dataset=digits", "--network=resnet8", "--batch_size=64"]
TRAIN_SECTIONS = ("run", "data", "recipe", "model", "teachers", "train")


def train_command(workdir, epochs):
    return [sys.executable, "-m", "kdas_tf.train", *TRAIN, f"--epochs={epochs}", f"--workdir={workdir}", "--verbosity=0"]


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def hold_in_child(directory, call="hold(sys.argv[1])"):
    """A Python process (no TensorFlow: it starts in a blink) holding a lock of `directory` until it is killed."""
    child = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time\nfrom kdas_tf.runtime import lock\nlock.{call}\n"
         "print('held', flush=True)\ntime.sleep(600)", str(directory)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


@contextlib.contextmanager
def mounted(target, *options):
    """`mount OPTIONS target` for the block, or skip the test where mounting is not allowed (not root)."""
    os.makedirs(target, exist_ok=True)
    made = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"cannot mount here: {made.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


# --- one process per work directory ---------------------------------------------------------------


def test_a_second_command_on_a_held_workdir_is_refused_in_one_line_naming_the_holder(tmp_path):
    lock.hold(tmp_path)  # this test process is the first: it holds the directory as a running job does
    run = subprocess.run(train_command(tmp_path, 1), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-3000:]
    lines = error_lines(run.stderr)
    assert len(lines) == 1 and "Traceback" not in run.stderr
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in lines[0] and "rerun the same command" in lines[0]
    assert sorted(os.listdir(tmp_path)) == [".lock"]  # refused before anything was written


def test_the_lock_of_a_killed_holder_is_released_at_once(tmp_path):
    holder = hold_in_child(tmp_path)
    with pytest.raises(UserError, match=f"in use by pid {holder.pid} on host"):
        lock.hold(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock.hold(tmp_path)  # nobody removed anything: the operating system let go of the dead process's lock
    assert open(tmp_path / ".lock").read().startswith(f"pid {os.getpid()} ")


def test_runs_share_a_teacher_workdir_to_read_but_not_while_its_owner_writes_it(tmp_path):
    teachers, run_a = tmp_path / "teachers", tmp_path / "a"
    teachers.mkdir()
    owner = hold_in_child(teachers)  # python -m kdas_tf.teachers --workdir=teachers, training them
    with pytest.raises(UserError, match=f"being written by pid {owner.pid} .*wait for it to end"):
        Workdir(str(run_a), str(teachers)).claim({})
    assert not run_a.exists()  # refused before the run's own directory was made
    owner.kill()
    owner.wait()
    reader = hold_in_child(teachers, "hold_teachers(sys.argv[1], train=False)")  # another run reading them
    try:
        workdir = Workdir(str(run_a), str(teachers))
        workdir.claim({})  # two readers at once
        with pytest.raises(UserError, match="other runs are reading the teachers"):
            workdir.claim_teachers()  # but neither may train them while the other reads
        lock.release(run_a)
        lock.release(teachers)
        with pytest.raises(UserError, match="in use by runs reading its teachers"):
            Workdir(str(teachers)).claim({})  # nor may a command own their directory meanwhile
    finally:
        reader.kill()
        reader.wait()
    workdir.claim_teachers()  # alone now


# --- faults of the machine, found before data is read -----------------------------------------------


def test_a_workdir_naming_a_file_is_refused_in_one_line(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    run = subprocess.run(train_command(afile, 1), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-3000:]
    lines = error_lines(run.stderr)
    assert len(lines) == 1 and "is a file, not a directory" in lines[0] and "Traceback" not in run.stderr
    assert "digits:" not in run.stderr  # the data's log line: refused before it was loaded
    assert afile.read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["notes.txt"]


def no_data(monkeypatch):
    """Make reading any data fail the test: a refusal must come first."""
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data was read before the refusal"))


@contextlib.contextmanager
def unwritable(tmp_path):
    """A directory this process cannot write: a read-only bind mount as root (root ignores permissions),
    else one without write permission. Yields (it, the reason the refusal gives)."""
    target = tmp_path / "unwritable"
    if os.geteuid() != 0:
        target.mkdir(mode=0o555)
        yield target, "Permission denied"
        target.chmod(0o755)
        return
    (tmp_path / "source").mkdir()
    with mounted(target, "--bind", "-o", "ro", str(tmp_path / "source")):
        yield target, "Read-only file system"


def test_an_unwritable_workdir_is_refused_before_data_is_read(tmp_path, monkeypatch):
    no_data(monkeypatch)
    with unwritable(tmp_path) as (directory, reason):
        for workdir in (directory, directory / "run"):  # the directory itself, or where it would be made
            job = config.from_args([*TRAIN, "--epochs=1", f"--workdir={workdir}"], TRAIN_SECTIONS)
            with pytest.raises(UserError, match=f"is not writable \\({reason}\\): make it writable"):
                pipeline.train_one(job)
        assert os.listdir(directory) == []


def test_a_name_too_long_is_refused_and_leaves_no_directory_behind(tmp_path, monkeypatch):
    no_data(monkeypatch)
    workdir = tmp_path / "runs" / "digits" / ("x" * 300) / "more"
    job = config.from_args([*TRAIN, "--epochs=1", f"--workdir={workdir}"], TRAIN_SECTIONS)
    with pytest.raises(UserError, match="longer than this file system allows .*choose a shorter --workdir"):
        pipeline.train_one(job)
    assert os.listdir(tmp_path) == []  # not even runs/digits
    with pytest.raises(UserError, match="--teacher_workdir=.*longer than"):
        Workdir(str(tmp_path / "ok"), str(workdir)).check_writable()


def test_a_workdir_under_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(UserError, match="afile is a file, not a directory"):
        check_writable(str(tmp_path / "afile" / "run"), "workdir")


# --- a full disk --------------------------------------------------------------------------------------


def test_a_full_disk_while_writing_keeps_the_old_file_and_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    storage.write_json(path, {"finished": 1})
    real_fsync = os.fsync

    def full(descriptor):  # the write reaches the disk at fsync: where a full disk is reported
        real_fsync(descriptor)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as raised:
        storage.write_json(path, {"finished": 2})
    assert storage.read_json(path) == {"finished": 1} and os.listdir(tmp_path) == ["results.json"]
    assert storage.fault_message(raised.value) == \
        f"{path}: No space left on device: free space, then rerun the same command to resume"  # the file it wrote


def test_faults_of_the_machine_are_recognised_and_bugs_are_not():
    assert storage.fault_message(OSError(errno.EROFS, "Read-only file system", "/runs/x/settings.json")) == \
        ("/runs/x/settings.json: Read-only file system: make it writable or use another --workdir, then rerun "
         "the same command to resume")
    checkpoint = tf.errors.ResourceExhaustedError(None, None, "/runs/x/ckpt-2_temp/part-0; No space left on device")
    assert storage.fault_message(checkpoint).endswith("No space left on device: free space, then rerun the "
                                                      "same command to resume")
    wrapped = ValueError("could not save")
    wrapped.__cause__ = OSError(errno.ENAMETOOLONG, "File name too long", "x" * 300)
    assert storage.fault_message(wrapped).endswith("use a shorter --workdir")
    assert storage.fault_message(OSError(errno.ENOENT, "No such file or directory", "/x")) is None
    assert storage.fault_message(KeyError("a bug")) is None


def test_a_disk_that_fills_during_training_stops_in_one_line_with_the_last_checkpoint_intact(tmp_path):
    # resnet8's checkpoint is ~0.6 MB: the first fits in 1 MB, the second does not.
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=1m", "tmpfs") as small:
        run = subprocess.run(train_command(small, 3), cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 2, run.stderr[-3000:]
        lines = error_lines(run.stderr)
        assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
        assert "No space left on device" in lines[0] and "free space, then rerun the same command" in lines[0]
        assert f"{small}/train/resnet8_ce/" in lines[0]  # the file it could not write
        checkpoints = small / "train" / "resnet8_ce" / "checkpoints"
        last = tf.train.latest_checkpoint(str(checkpoints))
        assert last.endswith("ckpt-1")
        assert tf.train.load_checkpoint(last).get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE") == 1


# --- temporaries of dead processes ----------------------------------------------------------------------


def leftovers_and_work(root):
    """A work directory with a dead process's temporaries beside finished files; returns (temporaries, files)."""
    checkpoints = root / "train" / "resnet8_ce" / "checkpoints"
    temporaries = [root / ".tmp-x", root / "final" / "kdas_od" / ".tmp-abc.keras",
                   checkpoints / "ckpt-3_temp" / "part-00000-of-00001.data-00000-of-00001",
                   root / "teacher_outputs" / "kd" / ".tmp-seed0_epoch1-q1" / "target.npy",
                   root / ".export-k2" / "saved_model.pb"]
    finished = [root / "results.json", checkpoints / "ckpt-2.index", checkpoints / "checkpoint",
                root / "budgets" / "M0.9" / ".lock", root / "budgets" / "M0.9" / ".tmp-its-own"]
    for path in temporaries + finished:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    return temporaries, finished


def test_temporaries_of_dead_processes_are_removed_at_the_next_claim(tmp_path):
    temporaries, finished = leftovers_and_work(tmp_path)
    Workdir(str(tmp_path)).claim({})
    assert [path for path in temporaries if os.path.exists(path)] == []
    assert not (tmp_path / "train" / "resnet8_ce" / "checkpoints" / "ckpt-3_temp").exists()
    assert not (tmp_path / ".export-k2").exists()
    assert all(os.path.exists(path) for path in finished)  # a nested work directory cleans its own


def test_a_claim_refused_by_its_state_check_removes_nothing_and_records_no_settings(tmp_path):
    temporaries, _ = leftovers_and_work(tmp_path)
    (tmp_path / "settings.json").write_text('{"dataset": "digits"}')  # made before --epochs was recorded
    before = {str(path): path.read_bytes() if path.is_file() else None for path in tmp_path.rglob("*")}

    def refuse():
        raise UserError("a state file is invalid")

    with pytest.raises(UserError, match="a state file is invalid"):
        Workdir(str(tmp_path)).claim({"dataset": "digits", "epochs": 1}, check_state=refuse)
    after = {str(path): path.read_bytes() if path.is_file() else None for path in tmp_path.rglob("*")}
    assert after.pop(str(tmp_path / ".lock")) and after == before
    Workdir(str(tmp_path)).claim({"dataset": "digits", "epochs": 1}, check_state=lambda: None)  # held already
    assert not any(os.path.exists(path) for path in temporaries)
    assert json.loads((tmp_path / "settings.json").read_text()) == {"dataset": "digits", "epochs": 1}


def test_a_chief_keeps_temporaries_while_workers_of_its_search_run(tmp_path):
    temporaries, _ = leftovers_and_work(tmp_path)
    worker = hold_in_child(tmp_path, "hold_as_worker(sys.argv[1])")  # e.g. on another host, still writing its trial
    try:
        Workdir(str(tmp_path)).claim({})
        assert all(os.path.exists(path) for path in temporaries)
    finally:
        worker.kill()
        worker.wait()
    lock.release_all()
    Workdir(str(tmp_path)).claim({})
    assert not any(os.path.exists(path) for path in temporaries)


def test_a_worker_claim_writes_nothing_and_holds_only_the_workers_lock(tmp_path):
    leftovers_and_work(tmp_path)
    (tmp_path / "settings.json").write_text('{"dataset": "digits"}')  # as its chief recorded them
    chief = hold_in_child(tmp_path)  # its chief holds the directory
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    try:
        Workdir(str(tmp_path)).claim({"dataset": "digits", "epochs": 1}, owner=False)  # not refused, and ...
    finally:
        chief.kill()
        chief.wait()
    # ... settings.json as it was (the chief records them) and no temporary removed (the others are writing)
    assert sorted(str(path) for path in tmp_path.rglob("*")) == sorted(before + [str(tmp_path / ".lock-workers")])
    assert json.loads((tmp_path / "settings.json").read_text()) == {"dataset": "digits"}
    assert lock.workers_alive(str(tmp_path))  # this process, until it lets go


# --- Ctrl-C and SIGTERM -----------------------------------------------------------------------------------


def start_and_signal(command, signum, after):
    """Start `command`, send `signum` once a stderr line contains `after`; returns (exit code, stderr)."""
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 300
    for line in process.stderr:
        seen.append(line)
        if after in line:
            process.send_signal(signum)
            break
        assert time.monotonic() < deadline, "".join(seen[-20:])
    seen.extend(process.stderr)
    return process.wait(timeout=120), "".join(seen)


def test_sigint_and_sigterm_stop_in_one_line_and_the_same_command_resumes(tmp_path):
    command = train_command(tmp_path, 6)
    code, stderr = start_and_signal(command, signal.SIGINT, after="epoch 1/6")
    assert code == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "stopped by SIGINT; rerun the same command to resume"
    assert "Traceback" not in stderr
    code, stderr = start_and_signal(command, signal.SIGTERM, after="epoch 2/6")
    assert code == 143, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "stopped by SIGTERM; rerun the same command to resume"
    assert "resumed from" in stderr and "Traceback" not in stderr
    assert not [name for _, _, files in os.walk(tmp_path) for name in files if name.startswith(".tmp-")]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "epoch 1/6" not in finished.stderr and "epoch 6/6" in finished.stderr  # resumed, not redone
    assert storage.read_json(tmp_path / "train" / "resnet8_ce" / "results.json")["epochs"] == 6


def test_a_worker_stopped_by_sigterm_is_restarted_like_a_killed_one_and_an_error_is_not():
    exits = {"stopped": 143, "interrupted": 130, "failed": 1}
    pool = launcher.WorkerPool({name: ([sys.executable, "-c", f"raise SystemExit({code})"], {})
                                for name, code in exits.items()})
    pool.start_all()
    try:
        deadline = time.monotonic() + 60
        while pool.poll():  # each is restarted until MAX_RESTARTS, or not at all
            assert time.monotonic() < deadline, (pool.restarts, pool.exit_codes)
            time.sleep(0.05)
        assert pool.restarts == {"stopped": launcher.MAX_RESTARTS, "interrupted": launcher.MAX_RESTARTS, "failed": 0}
        assert pool.exit_codes == exits
    finally:
        pool.stop()
