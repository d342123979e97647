"""Bad input at the entry points: one line that says what is wrong and what to do, exit code 2, no stack
trace, and nothing already on disk touched.

Every case is a real `python -m kdas_tf.<entry>` subprocess, one per way a command can fail (a flag absl
refuses, a value the config refuses, missing data, a work directory, a corrupt file); the other values
the config refuses are judged in-process, with the same messages, by test_config.py. The cases run two at
a time in one fixture (each pays TensorFlow's import), and each test reads its own result.
"""

import concurrent.futures
import dataclasses
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

# The search reads the embedded default's flagfile; train and teachers do not define the search's flags.
BASE = {"search": ["--flagfile=flags/digits.cfg"], "train": ["--dataset=digits"], "teachers": ["--dataset=digits"]}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    entry: str
    args: tuple
    message: str  # must appear in the error line
    prepare: str = ""  # what the work directory holds before the run (see PREPARE)


CASES = [
    Case("missing_flagfile", "search", ("--flagfile=flags/nope.cfg",), "Unable to open flagfile"),
    Case("unknown_flag", "search", ("--bogus=1",), "Unknown command line flag 'bogus'"),
    Case("unknown_dataset", "search", ("--dataset=mnist",), "--dataset=mnist: value should be one of"),
    Case("no_workdir", "teachers", ("--workdir=",), "--workdir is required"),
    Case("unknown_operation", "train", ("--architecture=resnet8:conv9x9/skip/skip",),
         "unknown add-on operation 'conv9x9'"),
    Case("budget_below_backbone", "search", ("--budget=0.01",), "raise --budget"),
    Case("cifar100_not_prepared", "search", ("--dataset=cifar100", "--data_dir={workdir}/tfds"),
         "cifar100 is not prepared in --data_dir="),
    Case("tinyimagenet_not_prepared", "teachers", ("--dataset=tinyimagenet", "--data_dir={workdir}/tfds"),
         "holds no tiny-imagenet-200.zip"),
    Case("fashion_mnist_not_installed", "search", ("--dataset=fashion_mnist", "--data_dir={workdir}/tfds",
                                                   "--manual_dir={workdir}"), "apt-get install dataset-fashion-mnist"),
    Case("workdir_of_another_configuration", "search", ("--budget=3x",), "was made with other settings",
         prepare="settings"),
    Case("workdir_of_another_recipe", "search", ("--search_epochs=2",), "--search_epochs was 4, now 2",
         prepare="settings"),
    Case("multi_worker_search", "search", ("--strategy=multi_worker",), "use multi_worker with python -m kdas_tf.train"),
    Case("corrupt_checkpoint", "train", ("--network=resnet8", "--epochs=1"), "is corrupt or does not fit",
         prepare="checkpoint"),
    Case("corrupt_teacher", "train", ("--network=resnet8", "--loss=od", "--num_teachers=1"),
         "is not a readable Keras model", prepare="teacher"),
    # Issue 28: data and given teachers (made once in {given}, see given_files) judged before the run is claimed.
    Case("one_class_dataset", "search", ("--dataset=npz:{given}/one_class.npz",),
         "has 1 class (every training label is 0): a classifier needs at least two"),
    Case("validation_split_of_one_image", "search", ("--val_fraction=0.001",),
         "--val_fraction=0.001 holds out 1 validation image for 10 classes"),
    Case("teacher_fed_the_wrong_scale", "search", ("--dataset=npz:{given}/colours.npz",
                                                   "--teacher_models={given}/rescaling.keras"),
         "fed --teacher_input=standardised (chance 33.3%) but 100.0% fed pixels: pass --teacher_input=pixels"),
    Case("same_teacher_twice", "search", ("--teacher_models={given}/digits.keras,{given}/copy.keras",),
         "digits.keras and {given}/copy.keras are the same model (identical content"),
    Case("teacher_with_nan_weights", "search", ("--teacher_models={given}/nan.keras",),
         "nan.keras outputs NaN or infinity on this data's images"),
    Case("teacher_with_a_lambda_layer", "search", ("--teacher_models={given}/lambda.keras",),
         "lambda.keras holds a Lambda layer, which safe mode refuses"),
]


def given_files(directory):
    """The data and teachers the issue-28 cases name, made once before the cases run in threads."""
    import keras

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 8, 8), dtype=np.uint8)
    np.savez(os.path.join(directory, "one_class.npz"), x_train=images[:50], y_train=np.zeros(50, int),
             x_test=images[50:], y_test=np.zeros(10, int))
    labels = np.arange(360) % 3  # class k is brightest in channel k
    colours = rng.integers(0, 120, (360, 8, 8, 3))
    colours[np.arange(360), :, :, labels] += 120
    np.savez(os.path.join(directory, "colours.npz"), x_train=colours[:300].astype(np.uint8), y_train=labels[:300],
             x_test=colours[300:].astype(np.uint8), y_test=labels[300:])
    # Keras' convention, its own Rescaling layer (it takes pixels): the brightest channel wins, class 0 near 0.
    reader = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                               keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    reader.layers[-1].set_weights([10 * np.eye(3, dtype=np.float32), np.eye(1, 3, dtype=np.float32)[0]])
    reader.save(os.path.join(directory, "rescaling.keras"))
    digits = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    digits.save(os.path.join(directory, "digits.keras"))
    shutil.copy(os.path.join(directory, "digits.keras"), os.path.join(directory, "copy.keras"))
    digits.layers[-1].kernel.assign(np.full((64, 10), np.nan, np.float32))
    digits.save(os.path.join(directory, "nan.keras"))
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Lambda(lambda x: 2 * x), keras.layers.Flatten(),
                      keras.layers.Dense(10)]).save(os.path.join(directory, "lambda.keras"))
    return [os.path.join(directory, name) for name in sorted(os.listdir(directory))]


def prepare(case, workdir):
    """Lay out what the case needs on disk; returns the files that must survive untouched."""
    os.makedirs(workdir)
    files = []
    if case.prepare == "settings":
        path = os.path.join(workdir, "settings.json")
        with open(path, "w") as f:
            f.write('{"dataset": "digits", "budget": "2x", "search_epochs": 4}\n')
        files.append(path)
    if case.prepare == "checkpoint":
        directory = os.path.join(workdir, "train", "resnet8_ce", "checkpoints")
        os.makedirs(directory)
        with open(os.path.join(directory, "checkpoint"), "w") as f:
            f.write('model_checkpoint_path: "ckpt-1"\nall_model_checkpoint_paths: "ckpt-1"\n')
        for name in ("ckpt-1.index", "ckpt-1.data-00000-of-00001"):
            with open(os.path.join(directory, name), "wb") as f:
                f.write(b"not a checkpoint" * 4)
        files += [os.path.join(directory, n) for n in sorted(os.listdir(directory))]
    if case.prepare == "teacher":
        directory = os.path.join(workdir, "teachers", "member_0")
        os.makedirs(directory)
        with open(os.path.join(directory, "model.keras"), "wb") as f:
            f.write(b"PK\x03\x04 truncated")
        files.append(os.path.join(directory, "model.keras"))
    return files


def snapshot(paths):
    return {p: (os.stat(p).st_size, os.stat(p).st_mtime_ns, open(p, "rb").read()) for p in paths}


def run_case(case, tmp_root, given):
    workdir = os.path.join(tmp_root, case.name)
    kept = prepare(case, workdir)
    before = snapshot(kept)
    args = [a.format(workdir=workdir, given=given) for a in case.args]
    workdir_flag = [] if any(a.startswith("--workdir") for a in args) else [f"--workdir={workdir}"]
    command = [sys.executable, "-m", f"kdas_tf.{case.entry}", *BASE[case.entry], "--verbosity=0", *workdir_flag, *args]
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:  # input a command accepted and ran with: this case fails, not every case
        result = subprocess.CompletedProcess(command, None, "", "timed out after 180 s: the input was accepted")
    return result, workdir, before, snapshot(kept)


@pytest.fixture(scope="module")
def given(tmp_path_factory):
    """The directory of given_files and its snapshot before the cases ran."""
    directory = str(tmp_path_factory.mktemp("given"))
    return directory, snapshot(given_files(directory))


@pytest.fixture(scope="module")
def results(tmp_path_factory, given):
    root = str(tmp_path_factory.mktemp("bad_input"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {case.name: pool.submit(run_case, case, root, given[0]) for case in CASES}
        return {name: future.result() for name, future in futures.items()}


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_line_an_exit_code_and_leaves_the_disk_alone(case, results, given):
    result, workdir, before, after = results[case.name]
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and case.message.format(given=given[0]) in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr
    assert after == before  # what was on disk is still there, byte for byte
    assert snapshot(list(given[1])) == given[1]  # and the user's data and teachers
    if case.prepare != "settings" and case.entry == "search":
        # Judged before the work directory was claimed: a corrected rerun is not refused.
        assert not os.path.exists(os.path.join(workdir, "settings.json"))
    assert not os.path.exists(os.path.join(workdir, "teachers", "member_1"))  # nothing was trained


def test_verbosity_shows_the_stack_trace_too(tmp_path):
    command = [sys.executable, "-m", "kdas_tf.search", *BASE["search"], f"--workdir={tmp_path}", "--budget=0.01",
               "--verbosity=1"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "raise --budget" in error_lines(result.stderr)[0]
