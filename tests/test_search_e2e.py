"""python -m kdas_tf.search end to end on digits, as a user runs it, and the same command again.

The flagfile is the embedded default's, shrunk by command-line overrides so the
whole pipeline (teachers, search, final trainings, export) fits the test budget.
"""

import glob
import json
import os

import pytest
from conftest import run_search

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tiny_run):
    return tiny_run


def test_the_pipeline_writes_every_result(finished_run):
    workdir, first = finished_run
    assert "epoch 1/" in first.stderr  # progress lines (the rerun test relies on their absence)
    results = json.load(open(os.path.join(workdir, "results.json")))
    trials = results["trials"]
    assert [t["status"] for t in trials] == ["COMPLETED", "COMPLETED"]
    assert len({t["architecture"] for t in trials}) == 2
    assert all(t["parameters"] <= results["budget"] for t in trials)
    assert results["found_architecture"] in {t["architecture"] for t in trials}
    assert set(results["final"]) == {"student_ce", "kdas_od"}
    assert results["final"]["kdas_od"]["test"]["top1"] > 0.2  # ten classes, two epochs: well above chance
    assert results["controller"]["trial_updates"] == 2
    table = open(os.path.join(workdir, "results.md")).read()
    assert "| Teacher (2 x resnet8) | - | CE |" in table and "| KDAS resnet8" in table
    assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
    assert len(glob.glob(os.path.join(workdir, "teachers", "member_*", "model.keras"))) == 2


def test_the_same_command_again_redoes_nothing(finished_run):
    workdir, _ = finished_run
    finished = sorted(
        glob.glob(os.path.join(workdir, "**", "model.keras"), recursive=True)
        + glob.glob(os.path.join(workdir, "search", "trial_*", "result.json"))
    )
    stamps = {path: os.stat(path).st_mtime_ns for path in finished}
    again = run_search(workdir, "--verbosity=0")
    assert again.returncode == 0, again.stderr[-3000:]
    assert {path: os.stat(path).st_mtime_ns for path in finished} == stamps
    assert "epoch 1/" not in again.stderr  # no training at all
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert len(results["trials"]) == 2


def test_a_workdir_of_another_configuration_is_refused_in_one_line(finished_run):
    workdir, _ = finished_run
    other = run_search(workdir, "--budget=3x")
    assert other.returncode == 2
    lines = [line for line in other.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--budget was '2x', now '3x'" in lines[0] and "another --workdir" in lines[0]
    assert "Traceback" not in other.stderr
