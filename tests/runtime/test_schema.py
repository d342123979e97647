"""Every state file a run reads back is checked before use: the tiny run's own files pass, and each hostile edit
(a wrong type, inf or NaN, a value out of range, an unknown status) is refused in one line that names the file,
the field and how to rebuild it, with nothing on disk changed. The search command's refusals of such files, each
leaving the work directory as it was, are e2e/test_refused_rerun.py's."""

import json
import os
import shutil
import types

import pytest
from conftest import TINY_RUN_EXTRA, fingerprint, tiny_config

from kdas_tf import _internals, assembly
from kdas_tf.distill import finals
from kdas_tf.reporting import writer
from kdas_tf.runtime import schema
from kdas_tf.deploy import serving
from kdas_tf.errors import UserError
from kdas_tf.nas.tuner import KDASTuner
from kdas_tf.runtime.workdir import Workdir, finished_rows, served_model_path

DIGITS = types.SimpleNamespace(num_classes=10, image_shape=(8, 8, 1))


def copy_of(tiny_run, tmp_path, *parts):
    """A copy of the tiny run's `parts` (all of it when none) to corrupt."""
    workdir = str(tmp_path / "run")
    if not parts:
        shutil.copytree(tiny_run[0], workdir)
    for part in parts:
        shutil.copytree(os.path.join(tiny_run[0], part), os.path.join(workdir, part))
    return workdir


def edit(path, change):
    """Rewrite the JSON file `path` with change(content) applied, as a person (or a bad disk) would."""
    content = json.load(open(path))
    change(content)
    text = json.dumps(content, indent=2)
    # json.dumps writes inf as Infinity; a hand edit writes 1e999, which Python's json reads as inf as well
    open(path, "w").write(text.replace("Infinity", "1e999"))


def reload_search(workdir):
    config = tiny_config(workdir, *TINY_RUN_EXTRA)
    oracle = assembly.build_oracle(config, DIGITS, Workdir(workdir), assembly.budget(config)[0])
    _internals.set_project_dir(oracle, workdir, "search")
    oracle.reload()
    return oracle


def refused_in_one_line(call, path, *fragments):
    """call() raises a one-line UserError naming `path` and each fragment; returns the message."""
    with pytest.raises(UserError) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message
    for fragment in (path, *fragments):
        assert fragment in message, (fragment, message)
    return message


def test_the_files_of_a_finished_run_pass_every_check(tiny_run, tmp_path):
    workdir = copy_of(tiny_run, tmp_path, "search")
    before = fingerprint(os.path.join(workdir, "search"))
    oracle = reload_search(workdir)
    assert len(oracle.trials) == 2 and oracle.trial_updates == 2
    assert fingerprint(os.path.join(workdir, "search")) == before
    run = Workdir(tiny_run[0])
    assert set(finished_rows(run)) == {"student_ce", "kdas_kd", "kdas_od"}
    assert schema.read_teacher_report(run.teachers_results)["num_teachers"] == 2
    assert writer.load_summary(tiny_run[0])["exported"] == tiny_run[1]["exported"]


SEARCH_CASES = {  # (file, change, the field the message must name)
    "trial_updates is a word": ("oracle.json", lambda s: s["kdas"].update(trial_updates="many"),
                                "kdas.trial_updates is 'many'"),
    "a known score is inf": ("oracle.json",
                             lambda s: s["kdas"]["known_scores"].update({k: float("inf") for k in s["kdas"]["known_scores"]}),
                             "is inf, expected a finite number in [0, 1]"),
    "a negative update count": ("oracle.json", lambda s: s["kdas"].update(repeat_updates=-1), "kdas.repeat_updates is -1"),
    "a round past --rounds": ("oracle.json", lambda s: s["kdas"].update(round=3), "kdas.round is 3"),
    "a NaN baseline": ("oracle.json", lambda s: s["kdas"]["controller"].update(baseline=float("nan")),
                       "kdas.controller.baseline is nan"),
    "a retry count that is not an int": ("oracle.json", lambda s: s["run_times"].update({"0": 1.5}), "run_times.0 is 1.5"),
    "a score of 1e999": ("trial_0/trial.json", lambda t: t.update(score=float("inf")), "score is inf"),
    "a score given as a string": ("trial_0/trial.json", lambda t: t.update(score="0.9"), "score is '0.9'"),
    "a score above 1": ("trial_1/trial.json", lambda t: t.update(score=1.5), "score is 1.5"),
    "a completed trial without a score": ("trial_1/trial.json", lambda t: t.update(score=None), "score is None"),
    "an unknown status": ("trial_0/trial.json", lambda t: t.update(status="DONE"), "status is 'DONE', expected one of"),
    "a NaN observation": ("trial_0/trial.json",
                          lambda t: t["metrics"]["metrics"]["val_top1"]["observations"][0].update(value=[float("nan")]),
                          "metrics.metrics.val_top1.observations[0].value[0] is nan"),
    "no parameters": ("trial_0/trial.json", lambda t: t["hyperparameters"]["values"].update(parameters=0),
                      "hyperparameters.values.parameters is 0"),
    "an op that does not exist": ("trial_1/trial.json", lambda t: t["hyperparameters"]["values"].update(stage1_op1="conv9x9"),
                                  "hyperparameters.values.stage1_op1 is 'conv9x9'"),
    "a trial filed under another id": ("trial_1/trial.json", lambda t: t.update(trial_id="0"), "trial_id is '0'"),
    # JSON's true is Python's True, an int: a count must refuse it, not read it as 1
    "a round given as true": ("trial_0/trial.json", lambda t: t["hyperparameters"]["values"].update(round=True),
                              "hyperparameters.values.round is True, expected an integer >= 0"),
}


@pytest.mark.parametrize("case", sorted(SEARCH_CASES))
def test_an_invalid_search_state_is_refused_in_one_line_and_left_as_it_is(tiny_run, tmp_path, case):
    name, change, field = SEARCH_CASES[case]
    workdir = copy_of(tiny_run, tmp_path, "search")
    path = os.path.join(workdir, "search", name)
    edit(path, change)
    before = fingerprint(os.path.join(workdir, "search"))
    refused_in_one_line(lambda: reload_search(workdir), path, field, "move", "rerun the same command")
    assert fingerprint(os.path.join(workdir, "search")) == before


def test_a_trial_the_search_state_lists_without_its_file_is_named(tiny_run, tmp_path):
    workdir = copy_of(tiny_run, tmp_path, "search")
    os.remove(os.path.join(workdir, "search", "trial_1", "trial.json"))
    refused_in_one_line(lambda: reload_search(workdir), os.path.join(workdir, "search", "oracle.json"),
                        "lists trial 1", "trial_1/trial.json does not exist")


def test_an_unreadable_tuner_file_is_named_when_the_tuner_resumes(tiny_run, tmp_path):
    workdir = copy_of(tiny_run, tmp_path, "search")
    path = os.path.join(workdir, "search", "tuner0.json")
    open(path, "w").write("[")
    config = tiny_config(workdir, *TINY_RUN_EXTRA)
    oracle = assembly.build_oracle(config, DIGITS, Workdir(workdir), assembly.budget(config)[0])
    refused_in_one_line(lambda: KDASTuner(oracle, dataset=None, config=None, strategy=None, directory=workdir,
                                          project_name="search"), path, "is not readable JSON", "delete it")
    assert open(path).read() == "["


def test_an_unreadable_trial_file_is_named(tiny_run, tmp_path):
    workdir = copy_of(tiny_run, tmp_path, "search")
    path = os.path.join(workdir, "search", "trial_0", "trial.json")
    open(path, "w").write('{"score": ')
    refused_in_one_line(lambda: reload_search(workdir), path, "is not readable JSON")
    assert open(path).read() == '{"score": '


FINAL_CASES = {
    "val top-1 inf": (lambda r: r["val"].update(top1=float("inf")), "val.top1 is inf"),
    "test top-1 -5": (lambda r: r["test"].update(top1=-5), "test.top1 is -5"),
    "parameters as a word": (lambda r: r.update(parameters="many"), "parameters is 'many'"),
    "fractional epochs": (lambda r: r.update(epochs=2.5), "epochs is 2.5"),
    "epochs given as true": (lambda r: r.update(epochs=True), "epochs is True, expected an integer >= 1"),
    "an unknown loss": (lambda r: r.update(loss="mse"), "loss is 'mse'"),
}


@pytest.mark.parametrize("case", sorted(FINAL_CASES))
def test_an_invalid_final_row_is_refused_by_every_reader(tiny_run, tmp_path, case):
    change, field = FINAL_CASES[case]
    workdir = copy_of(tiny_run, tmp_path, "final")
    run = Workdir(workdir)
    path = run.final_results("kdas_od")
    edit(path, change)
    before = fingerprint(run.path("final"))
    advice = "rerun the same command: that training is evaluated again from its checkpoints"
    refused_in_one_line(lambda: finished_rows(run), path, field, advice)
    refused_in_one_line(lambda: served_model_path(run), path, field)
    # The pipeline reads a finished row back here (the arguments past the check are never reached).
    config = tiny_config(workdir, *TINY_RUN_EXTRA).recipe.train_config(network="resnet8", loss="od")
    refused_in_one_line(lambda: finals.train_architecture("resnet8", None, config, strategy=None,
                                                          workdir=run.final("kdas_od")), path, field)
    assert fingerprint(run.path("final")) == before


def test_an_invalid_teacher_report_is_refused(tiny_run, tmp_path):
    workdir = copy_of(tiny_run, tmp_path, "teachers")
    run = Workdir(workdir)
    edit(run.teachers_results, lambda r: r["member_test_top1"].__setitem__(1, float("nan")))
    before = fingerprint(run.teachers)
    refused_in_one_line(lambda: serving.architecture_of(run.member(0), workdir), run.teachers_results,
                        "member_test_top1[1] is nan", "write it again from the finished members")
    assert fingerprint(run.teachers) == before


RESULTS_CASES = {
    "a trial reward of inf": (lambda r: r["trials"][0].update(val_top1=float("inf")), "trials[0].val_top1 is inf"),
    "a final row's val top-1 above 1": (lambda r: r["final"]["kdas_od"]["val"].update(top1=7), "final.kdas_od.val.top1 is 7"),
    "an exported seed as a word": (lambda r: r.update(exported_seed="first"), "exported_seed is 'first'"),
    "a budget of none": (lambda r: r.update(budget=None), "budget is None"),
}


@pytest.mark.parametrize("case", sorted(RESULTS_CASES))
def test_an_invalid_run_results_file_is_refused_by_the_report_and_the_export(tiny_run, tmp_path, case):
    change, field = RESULTS_CASES[case]
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    path = Workdir(workdir).results
    shutil.copy(Workdir(tiny_run[0]).results, path)
    edit(path, change)
    before = fingerprint(workdir)
    refused_in_one_line(lambda: writer.write_report(workdir), path, field, "python -m kdas_tf.search command")
    refused_in_one_line(lambda: served_model_path(Workdir(workdir)), path, field)
    assert fingerprint(workdir) == before  # no report/ written either

