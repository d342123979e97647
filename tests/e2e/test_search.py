"""The whole pipeline end to end on digits, through the Python API (pipeline.run), and again.

The run is conftest's tiny_run: the embedded default's flagfile, shrunk so teachers, search, final
trainings and export fit the test budget. The command line is tested where it is the point: a rerun as
a user types it, and the refusal of a work directory made with other settings.
"""

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, TINY_RUN_EXTRA, TINY_SEARCH, run_search, tiny_config

from kdas_tf import config, data, models, pipeline
from kdas_tf.deploy import serving
from kdas_tf.runtime import lock, storage
from kdas_tf.errors import UserError
from kdas_tf.runtime.workdir import Workdir, served_model_path

pytestmark = pytest.mark.slow


def test_the_pipeline_writes_every_result(tiny_run):
    workdir, summary = tiny_run
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results == json.loads(json.dumps(summary))  # what run() returns is what it wrote
    trials = results["trials"]
    assert [t["status"] for t in trials] == ["COMPLETED", "COMPLETED"]
    assert len({t["architecture"] for t in trials}) == 2
    assert all(t["parameters"] <= results["budget"] for t in trials)
    assert results["found_architecture"] in {t["architecture"] for t in trials}
    # The found rule, computed apart from the oracle: the best reward of all rounds, ties to the smaller network.
    best = max(trials, key=lambda t: (t["val_top1"], -t["parameters"]))
    assert results["found"]["trial_id"] == best["trial_id"] and best["architecture"] == results["found_architecture"]
    assert (results["found"]["val_top1"], results["found"]["parameters"]) == (best["val_top1"], best["parameters"])
    assert results["found"]["round"] == best["round"] and "ties to the smaller network" in results["found"]["rule"]
    assert set(results["final"]) == {"student_ce", "kdas_kd", "kdas_od"}
    assert results["controller"]["trial_updates"] == 2
    table = open(os.path.join(workdir, "results.md")).read()
    assert "| Teacher (2 x resnet8) | - | CE |" in table and "| KDAS resnet8" in table
    assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
    assert len(glob.glob(os.path.join(workdir, "teachers", "member_*", "model.keras"))) == 2


def test_the_reported_test_accuracy_is_the_saved_models(tiny_run):
    """Each final row's test top-1 against an independent pass of its saved model over the test split."""
    workdir, summary = tiny_run
    dataset = data.load("digits", val_fraction=0.1, split_seed=0)
    test = dataset.splits["test"]
    for row, result in summary["final"].items():
        model = storage.load_model(os.path.join(workdir, "final", row, "model.keras"))
        images = (test.images.astype(np.float32) - np.array(dataset.info.mean)) / np.array(dataset.info.std)
        logits = model(tf.constant(images, tf.float32), training=False).numpy()
        accuracy = float(np.mean(np.argmax(logits, -1) == test.labels))
        assert result["test"]["top1"] == pytest.approx(accuracy, abs=1e-6), row  # exact: counts of 300 images


def test_the_served_row_is_chosen_by_validation_not_test(tiny_run, tmp_path):
    """Rankings by val and by test made to disagree: the rerun serves the val winner, and exports its model."""
    workdir = str(tmp_path / "run")
    shutil.copytree(tiny_run[0], workdir)
    run = Workdir(workdir)
    for row, val, test in (("kdas_kd", 0.5, 0.99), ("kdas_od", 0.9, 0.1)):
        result = storage.read_json(run.final_results(row))
        result["val"]["top1"], result["test"]["top1"] = val, test
        storage.write_json(run.final_results(row), result)
    summary = pipeline.run(tiny_config(workdir, *TINY_RUN_EXTRA))  # every step finished: only read back
    assert summary["exported"] == "kdas_od"
    assert summary["serving"]["row"] == "kdas_od" and summary["serving"]["decided_by"] == "validation top-1"
    exported = tf.saved_model.load(run.export).signatures["serving_default"]
    dataset = data.load("digits")
    images = dataset.splits["test"].images[:32]
    served = storage.load_model(run.final_model("kdas_od"))
    normalised = (images.astype(np.float32) - np.array(dataset.info.mean)) / np.array(dataset.info.std)
    expected = served(normalised, training=False).numpy().argmax(-1)
    np.testing.assert_array_equal(exported(images=tf.constant(images))["classes"].numpy(), expected)
    os.remove(run.results)  # without results.json's record, the export command applies the same rule
    assert served_model_path(run) == run.final_model("kdas_od")


def test_the_same_run_again_redoes_nothing(tiny_run):
    workdir, _ = tiny_run
    finished = sorted(
        glob.glob(os.path.join(workdir, "**", "model.keras"), recursive=True)
        + glob.glob(os.path.join(workdir, "search", "trial_*", "result.json"))
    )
    stamps = {path: os.stat(path).st_mtime_ns for path in finished}
    search_events = sorted(glob.glob(os.path.join(workdir, "tb", "search", "*")))
    again = run_search(workdir, *TINY_RUN_EXTRA)  # as a user reruns it
    assert again.returncode == 0, again.stderr[-3000:]
    assert {path: os.stat(path).st_mtime_ns for path in finished} == stamps
    assert sorted(glob.glob(os.path.join(workdir, "tb", "search", "*"))) == search_events  # no second result event
    assert "epoch 1/" not in again.stderr and "already finished" in again.stderr  # no training at all
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert len(results["trials"]) == 2


# What a fresh run printed at the default verbosity before the noise was fixed: TensorFlow's retracing warning for
# every Trainer's first evaluation (twice: TensorFlow's own handler and absl's), its SavedModel INFO line with the
# export's temporary path, and its C++ start-up lines.
NOISE = re.compile(r"triggered tf\.function retracing|Assets written to|Traceback|^WARNING:tensorflow|^INFO:tensorflow|"
                   r"absl::InitializeLog|^[IWEF]\d{4} [\d:. ]+\d+ \w+\.cc:\d+\]", re.M)


def test_a_run_at_the_default_verbosity_prints_its_progress_and_no_library_noise(tmp_path):
    command = [sys.executable, "-m", "kdas_tf.search", "--flagfile=flags/digits.cfg", f"--workdir={tmp_path}",
               *TINY_SEARCH, "--epochs=1"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert NOISE.findall(run.stderr) == [], run.stderr[-3000:]
    assert "step 4/4: export" in run.stderr and "trial 1 epoch 1/1" in run.stderr and "kdas od epoch 1/1" in run.stderr


def test_a_workdir_of_another_configuration_is_refused_in_one_line(tiny_run):
    workdir, _ = tiny_run
    other = run_search(workdir, *TINY_RUN_EXTRA, "--budget=3x")
    assert other.returncode == 2
    lines = [line for line in other.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--budget was '2x', now '3x'" in lines[0] and "another --workdir" in lines[0]
    assert "Traceback" not in other.stderr
    with pytest.raises(UserError, match="--budget was '2x', now '3x'"):  # the Python API refuses it alike
        pipeline.run(tiny_config(workdir, *TINY_RUN_EXTRA, "--budget=3x"))


@pytest.fixture(scope="module")
def two_seeds(tiny_run, tmp_path_factory):
    """A copy of the tiny run rerun with --seeds=2: each row's first training read back, a second trained;
    (workdir, what pipeline.run returned). Tests change copies of it."""
    workdir = str(tmp_path_factory.mktemp("two_seeds") / "run")
    shutil.copytree(tiny_run[0], workdir)
    return workdir, pipeline.run(tiny_config(workdir, *TINY_RUN_EXTRA, "--seeds=2"))


def served_by_the_documented_rule(final):
    """(row, seed) by runtime/rows.py's documented rule, written apart from it: of the kdas_* rows the best mean
    val top-1; of those tied, the fewest parameters; of those still tied, od before kd before ce. Of the row's
    seeds, the best val top-1; of tied seeds, the first."""
    kdas = {row: result for row, result in final.items() if row.startswith("kdas_")}
    best = max(result["val"]["top1"] for result in kdas.values())
    tied = [row for row, result in kdas.items() if result["val"]["top1"] == best]
    fewest = min(kdas[row]["parameters"] for row in tied)
    tied = [row for row in tied if kdas[row]["parameters"] == fewest]
    row = next(f"kdas_{loss}" for loss in ("od", "kd", "ce") if f"kdas_{loss}" in tied)
    val = [seed["val"]["top1"] for seed in kdas[row]["seeds"]]
    return row, val.index(max(val))


def test_more_seeds_add_trainings_and_the_tables_show_their_mean_and_std(tiny_run, two_seeds):
    workdir, summary = two_seeds
    run, first = Workdir(workdir), Workdir(tiny_run[0])
    for row, result in summary["final"].items():
        seeds = result["seeds"]
        assert seeds[0] == storage.read_json(first.final_results(row)) and len(seeds) == 2
        assert storage.read_json(run.final_results(row, 1)) == seeds[1]
        assert seeds[1]["test"] != seeds[0]["test"] or seeds[1]["val"] != seeds[0]["val"]  # another seed trained
        assert result["test"]["top1"] == pytest.approx((seeds[0]["test"]["top1"] + seeds[1]["test"]["top1"]) / 2)
    assert " ± " in open(run.results_table).read()
    served, seed = served_by_the_documented_rule(summary["final"])
    assert (summary["exported"], summary["exported_seed"]) == (served, seed)
    assert served_model_path(run) == run.final_model(served, seed)


# The val top-1 of each training (seed 0, seed 1) that makes kdas_od's seed 1, or seed 0, the served one.
SERVING_SEED = {
    1: {"kdas_kd": (0.1, 0.1), "kdas_od": (0.5, 0.9)},
    0: {"kdas_kd": (0.9, 0.9), "kdas_od": (0.9, 0.9)},  # all tied: od by the loss order, then the first seed
}


@pytest.mark.parametrize("seed", sorted(SERVING_SEED, reverse=True))
def test_the_export_command_exports_the_served_seeds_model(two_seeds, tmp_path, seed):
    """Validation made to serve kdas_od's seed 1 (or 0): the rerun records that seed, and the export command's
    SavedModel classifies the test images as that seed's model does (the two seeds' models disagree)."""
    workdir = str(tmp_path / "run")
    shutil.copytree(two_seeds[0], workdir)
    run = Workdir(workdir)
    for row, val in SERVING_SEED[seed].items():
        for index in (0, 1):
            result = storage.read_json(run.final_results(row, index))
            result["val"]["top1"] = val[index]
            storage.write_json(run.final_results(row, index), result)
    summary = pipeline.run(tiny_config(workdir, *TINY_RUN_EXTRA, "--seeds=2"))  # every step finished: only read back
    assert (summary["exported"], summary["exported_seed"]) == ("kdas_od", seed)
    assert served_by_the_documented_rule(summary["final"]) == ("kdas_od", seed)
    output = serving.export_from_workdir(workdir, data_config=config.DataConfig(), given={},
                                         output=str(tmp_path / "export"))  # python -m kdas_tf.export's call
    dataset = data.load("digits")
    images = dataset.splits["test"].images
    normalised = (images.astype(np.float32) - np.array(dataset.info.mean)) / np.array(dataset.info.std)
    classes = [storage.load_model(run.final_model("kdas_od", index))(normalised, training=False).numpy().argmax(-1)
               for index in (0, 1)]
    assert np.any(classes[0] != classes[1])
    exported = tf.saved_model.load(output).signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_array_equal(exported["classes"].numpy(), classes[seed])
    os.remove(run.results)  # without results.json's record, the export command applies the same rule
    assert served_model_path(run) == run.final_model("kdas_od", seed)


def test_manmade_auto_adds_the_deeper_network_nearest_the_found_size_with_each_final_loss(tiny_run, tmp_path):
    """--manmade=auto on a finished run: only the man-made rows train; the network is the deeper ResNet whose
    size is nearest the found model's (judged here from every candidate's count), and Table 2 lists it
    between the plain student and KDAS. The served row stays a KDAS row."""
    workdir = str(tmp_path / "run")
    shutil.copytree(tiny_run[0], workdir)
    before = tiny_run[1]
    summary = pipeline.run(tiny_config(workdir, *TINY_RUN_EXTRA, "--manmade=auto"))
    found = before["final"]["kdas_od"]["parameters"]
    sizes = {f"resnet{6 * n + 2}": models.count_parameters(f"resnet{6 * n + 2}", 10, (8, 8, 1)) for n in range(2, 20)}
    nearest = min(sizes, key=lambda name: abs(sizes[name] - found))
    assert set(summary["final"]) == set(before["final"]) | {f"manmade_{nearest}_kd", f"manmade_{nearest}_od"}
    for row in before["final"]:
        assert summary["final"][row] == before["final"][row]  # read back, not retrained
    assert summary["final"][f"manmade_{nearest}_od"]["parameters"] == sizes[nearest]
    assert summary["exported"] == before["exported"]
    table = open(Workdir(workdir).results_table).read().splitlines()
    names = [line.split(" | ")[0] for line in table if line.startswith("| ") and "---" not in line][1:]
    assert names == ["| Teacher (2 x resnet8)", "| Student resnet8", f"| {nearest} (man-made)",
                     f"| {nearest} (man-made)", f"| KDAS {before['found_architecture']}",
                     f"| KDAS {before['found_architecture']}"]


def test_final_training_all_trains_teachers_and_final_rows_on_validation_too_but_not_the_search(tmp_path):
    """--final_training=all (the paper's setting): members and final rows see every official training image,
    the search's candidates only the images without the holdout that rewards them; the served row is then
    chosen by loss order, its first seed."""
    workdir = str(tmp_path / "run")
    summary = pipeline.run(tiny_config(workdir, *TINY_RUN_EXTRA, "--final_training=all"))
    run, holdout = Workdir(workdir), data.load("digits")
    everything = holdout.info.num_train + holdout.info.num_val
    for row in summary["final"].values():
        assert [(s["train_images"], s["trained_on_validation"]) for s in row["seeds"]] == [(everything, True)]
    # What each cache was built from: the search's (od candidates) and the final rows' (kd and od).
    search_cache = storage.read_json(os.path.join(run.teacher_outputs, "manifest.json"))
    final_cache = storage.read_json(os.path.join(run.teacher_outputs + "_with_validation", "manifest.json"))
    assert (search_cache["num_train"], final_cache["num_train"]) == (holdout.info.num_train, everything)
    every_image = hashlib.sha1(np.arange(everything, dtype=np.int64).tobytes()).hexdigest()[:12]
    assert storage.read_json(os.path.join(run.teachers, "settings.json"))["train_split"] == every_image
    assert (summary["exported"], summary["exported_seed"]) == ("kdas_od", 0)
    assert summary["serving"]["decided_by"] == "loss order od > kd > ce"
    with pytest.raises(UserError, match="--final_training was 'all', now 'holdout'"):
        pipeline.run(tiny_config(workdir, *TINY_RUN_EXTRA))


def test_finished_teachers_of_final_training_all_are_resumed_not_refused(tmp_path):
    """Under --final_training=all the members train on the validation images too, and teachers/settings.json
    records that split: the check before a search compares it with the same data, not the search's own split."""
    workdir = str(tmp_path / "run")
    run = tiny_config(workdir, "--num_teachers=1", "--epochs=1", "--final_training=all")
    pipeline.train_teachers(run)
    lock.release(workdir)
    pipeline._start(run, None, job="search")  # the claim of a search distilling from them: nothing refused
