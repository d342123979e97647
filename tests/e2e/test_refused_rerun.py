"""A refused rerun writes nothing: each way python -m kdas_tf.search (or kdas_tf.teachers, kdas_tf.train) refuses a
finished work directory (or a fresh one) ends in one line and exit code 2, and leaves every file as it was, byte for
byte, with no TensorBoard run added and no directory made. The lock file, whose only content is its holder's record,
is the one file a refused run may write.

One tiny digits run (read from an npz, so that its data can change at the same path) is made once for the
module; each case reruns a copy of it, with its edit, through the command line. Its npz is named relative to the
case's folder, so each case has its own data at the path the run recorded. Each copy also holds a temporary that a
killed process left: a claim of the directory deletes it, so a refusal that came after the claim shows. The reruns
go two at a time.
"""

import concurrent.futures
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, TINY_SEARCH, fingerprint, tiny_config

from kdas_tf import pipeline
from kdas_tf.data import sources
from kdas_tf.runtime import lock

pytestmark = pytest.mark.slow

DATA = "digits.npz"  # in each case's folder, the command's working directory
RUN = ["--dataset=npz:" + DATA, "--num_teachers=1", "--epochs=1"]  # after TINY_SEARCH: the later flag counts
# The teachers and train commands take no search flags: the run's teachers as the digits flagfile and RUN made them.
JOB = [*RUN, "--teacher_network=resnet8", "--batch_size=64", "--learning_rate=0.05", "--weight_decay=1e-4"]
LEFT_BY_A_KILLED_PROCESS = ".tmp-left-by-a-killed-process"


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    message: str  # must appear in the one error line
    edit: str = ""  # what is done to the copy of the finished run before the rerun (see EDITS)
    args: tuple = ()
    fresh: bool = False  # no finished run: the work directory does not exist and must not after
    entry: str = "search"  # python -m kdas_tf.ENTRY
    workdir: str = "run"  # --workdir, in the case's folder


def _json(path, change):
    content = json.load(open(path))
    change(content)
    # json.dumps writes inf as Infinity; a hand edit writes 1e999, which Python's json reads as inf as well
    open(path, "w").write(json.dumps(content, indent=2).replace("Infinity", "1e999"))


def _truncate(path):
    content = open(path, "rb").read()
    open(path, "wb").write(content[:len(content) // 2])


def _other_data(folder):
    arrays = dict(np.load(os.path.join(folder, DATA)))
    arrays["x_train"][0] = 255 - arrays["x_train"][0]  # one image of 1,497 changed; every shape as it was
    np.savez(os.path.join(folder, DATA), **arrays)


def _without(*keys):
    def change(content):
        for key in keys:
            *parents, last = key.split(".")
            for parent in parents:
                content = content[parent]
            content.pop(last, None)  # a key older runs lack is missing already
    return change


def _train_row(folder):
    """A finished python -m kdas_tf.train of resnet8 with CE (the run's student_ce row, as it made one)."""
    shutil.copytree(os.path.join(folder, "run", "final", "student_ce"), os.path.join(folder, "run", TRAINED))


TRIAL = os.path.join("run", "search", "trial_0", "trial.json")
MEMBER = os.path.join("run", "teachers", "member_0", "model.keras")
TRAINED = os.path.join("train", "resnet8_ce")
EDITS = {
    "": lambda folder: None,
    "infinite_score": lambda folder: _json(os.path.join(folder, TRIAL), lambda t: t.update(score=float("inf"))),
    "score_as_text": lambda folder: _json(os.path.join(folder, TRIAL), lambda t: t.update(score="0.9")),
    "oracle_of_another_schema": lambda folder: _json(os.path.join(folder, "run", "search", "oracle.json"),
                                                     _without("kdas.budget")),
    "settings_truncated": lambda folder: _truncate(os.path.join(folder, "run", "settings.json")),
    "settings_deleted": lambda folder: os.remove(os.path.join(folder, "run", "settings.json")),
    "settings_without_data": lambda folder: _json(os.path.join(folder, "run", "settings.json"), _without("data")),
    "final_row_truncated": lambda folder: _truncate(os.path.join(folder, "run", "final", "student_ce", "results.json")),
    "teacher_truncated": lambda folder: _truncate(os.path.join(folder, MEMBER)),
    # Another network's weights in the member's place (a file copied from another run): a readable model.
    "teacher_replaced": lambda folder: shutil.copy(os.path.join(folder, "run", "final", "student_ce", "model.keras"),
                                                   os.path.join(folder, MEMBER)),
    "train_row_truncated": lambda folder: (_train_row(folder),
                                           _truncate(os.path.join(folder, "run", TRAINED, "results.json"))),
    "other_data": _other_data,
    "busy": lambda folder: lock.hold(os.path.join(folder, "run")),  # this test process holds it, as a running job
}

CASES = [
    Case("other_settings", "--search_epochs was 1, now 2", args=("--search_epochs=2",)),
    Case("other_schema", "search/oracle.json is invalid: kdas.budget is missing", "oracle_of_another_schema"),
    Case("trial_with_an_infinite_score", "search/trial_0/trial.json is invalid: score is inf", "infinite_score"),
    Case("trial_with_a_score_of_the_wrong_type", "trial_0/trial.json is invalid: score is '0.9'", "score_as_text"),
    Case("truncated_settings", "run/settings.json is not readable JSON", "settings_truncated"),
    Case("truncated_final_row", "final/student_ce/results.json is not readable JSON", "final_row_truncated"),
    Case("damaged_teacher", "teachers/member_0/model.keras is not a readable Keras model", "teacher_truncated"),
    Case("busy_directory", "is in use by", "busy"),
    Case("other_data_at_the_same_path", "was made from other data", "other_data"),
    Case("results_without_settings", "holds results but no settings.json", "settings_deleted",
         args=("--search_epochs=2",)),
    Case("settings_that_predate_the_data_record", 'run/settings.json does not record the data the run was made from '
         '(it predates that record): if that was this data, add "data": "sha256:', "settings_without_data"),
    Case("batch_larger_than_the_training_set", "--batch_size=2000 is larger than the 1347", args=("--batch_size=2000",),
         fresh=True),
    Case("train_examples_below_a_batch", "larger than the 10 training examples", args=("--train_examples=10",),
         fresh=True),
    # The run's own members replaced by other weights: the results so far were made with the reported ones.
    Case("other_teacher_in_its_place", f"{MEMBER} is not the member", "teacher_replaced"),
    # A new run reading the finished run's teachers (--teacher_workdir): judged before its directory is made.
    Case("damaged_teacher_in_the_teacher_workdir", f"{MEMBER} is not a readable Keras model", "teacher_truncated",
         args=("--teacher_workdir=run",), workdir="new"),
    Case("other_teacher_in_the_teacher_workdir", f"{MEMBER} is not the member", "teacher_replaced",
         args=("--teacher_workdir=run",), workdir="new"),
    # The teachers and train commands check what they read back before their claim deletes a temporary.
    Case("teachers_command_on_a_damaged_teacher", "member_0/model.keras is not a readable Keras model",
         "teacher_truncated", entry="teachers"),
    Case("train_command_on_a_damaged_teacher", "member_0/model.keras is not a readable Keras model",
         "teacher_truncated", args=("--network=resnet8", "--loss=od"), entry="train"),
    Case("train_command_on_its_truncated_training", f"{TRAINED}/results.json is not readable JSON",
         "train_row_truncated", args=("--network=resnet8", "--loss=ce"), entry="train"),
]


def rerun(folder, case):
    """python -m kdas_tf.ENTRY on the case's copy, as the finished run's command (plus the case's args)."""
    flags = [f"--flagfile={ROOT}/flags/digits.cfg", *TINY_SEARCH, *RUN] if case.entry == "search" else JOB
    command = [sys.executable, "-m", f"kdas_tf.{case.entry}", *flags, f"--workdir={os.path.join(folder, case.workdir)}",
               "--verbosity=0", *case.args]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, timeout=300)


def run_case(case, finished, root):
    folder = os.path.join(root, case.name)
    os.makedirs(folder)
    shutil.copy(os.path.join(finished, DATA), folder)
    if not case.fresh:
        shutil.copytree(os.path.join(finished, "run"), os.path.join(folder, "run"))
        open(os.path.join(folder, "run", LEFT_BY_A_KILLED_PROCESS), "w").close()
    EDITS[case.edit](folder)
    before = fingerprint(folder, skip=(lock.LOCK_FILE,))
    result = rerun(folder, case)
    return result, before, fingerprint(folder, skip=(lock.LOCK_FILE,))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{case: (the rerun, the fingerprint of the case's folder before, after)}."""
    finished = str(tmp_path_factory.mktemp("finished"))
    (train_x, train_y), (test_x, test_y) = sources.digits()
    np.savez(os.path.join(finished, DATA), x_train=train_x, y_train=train_y, x_test=test_x, y_test=test_y)
    here = os.getcwd()
    os.chdir(finished)  # the npz is named relative to it, as in each case's folder
    try:
        pipeline.run(tiny_config(os.path.join(finished, "run"), *RUN))
    finally:
        os.chdir(here)
        lock.release(os.path.join(finished, "run"))
    root = str(tmp_path_factory.mktemp("refused_rerun"))
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            futures = {case.name: pool.submit(run_case, case, finished, root) for case in CASES}
            return {name: future.result() for name, future in futures.items()}
    finally:
        lock.release(os.path.join(root, "busy_directory", "run"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_refused_rerun_says_why_in_one_line_and_leaves_the_work_directory_as_it_was(case, results):
    result, before, after = results[case.name]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(errors) == 1 and case.message in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    # Byte for byte: no file written, removed or added (no TensorBoard run, no temporary deleted), and no work
    # directory made where there was none (a fresh one refused before it was claimed).
    assert after == before
