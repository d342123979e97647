"""kdas_tf.load_search: a finished search as a KerasTuner tuner, read from its work directory alone.

On a copy of the tiny digits run (conftest's tiny_run): KerasTuner's three queries work, the best
hyperparameters are results.json's found architecture, and the best model, restored from its trial's
checkpoint, scores the trial's recorded validation top-1 again in an independent numpy pass over the
validation split (tolerance: one image of the 150, float32 sums in another order). No file or directory
of the work directory changes (names, contents and modification times). A --parallel_trials search has no
tuner0.json; the copy without it stands for one, and a chief's oracle with tied scores (the parallel
chief's own open_oracle, no training) checks the ranking rule.
"""

import os
import shutil

import numpy as np
import pytest
from keras_tuner.engine import trial as trial_module

import kdas_tf
from kdas_tf import assembly
from kdas_tf.runtime import storage
from kdas_tf.data.transforms import normalise
from kdas_tf.errors import UserError
from kdas_tf.recorded import RecordedOracle, recorded_config
from kdas_tf.nas.oracle import KDASOracle
from kdas_tf.parallel import chief
from conftest import fingerprint, tiny_config

pytestmark = pytest.mark.slow


def snapshot(root):
    """{relative path: 'folder' or (mtime_ns, sha256)} of everything under `root`."""
    return fingerprint(root, mtimes=True)


@pytest.fixture(scope="module")
def copies(tiny_run, tmp_path_factory):
    """(the tiny run as it is, the same without search/tuner0.json as a --parallel_trials search leaves it)."""
    base = tmp_path_factory.mktemp("loaded")
    single, parallel = str(base / "single"), str(base / "parallel")
    shutil.copytree(tiny_run[0], single)
    shutil.copytree(tiny_run[0], parallel)
    os.remove(os.path.join(parallel, "search", "tuner0.json"))
    return single, parallel


@pytest.mark.parametrize("which", ["single", "parallel"])
def test_a_recorded_search_answers_kerastuners_queries_and_writes_nothing(copies, which, capsys):
    workdir = copies[0] if which == "single" else copies[1]
    before = snapshot(workdir)
    summary = storage.read_json(os.path.join(workdir, "results.json"))
    tuner = kdas_tf.load_search(workdir)

    tuner.results_summary()
    printed = capsys.readouterr().out
    assert "Results summary" in printed and summary["found_architecture"] in printed

    hyperparameters = tuner.get_best_hyperparameters(2)
    assert hyperparameters[0].values["architecture"] == summary["found_architecture"]
    assert len(hyperparameters) == 2  # the tiny search trained two candidates
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.trial_id == tuner.oracle.best_trial().trial_id

    model = tuner.get_best_models(1)[0]
    digits = assembly.load_data(recorded_config(workdir))
    val = digits.splits["val"]
    logits = model(normalise(val.images, digits.info.mean, digits.info.std), training=False)
    top1 = float(np.mean(np.argmax(logits, -1) == val.labels))
    recorded = storage.read_json(os.path.join(workdir, "search", f"trial_{best.trial_id}", "result.json"))
    assert recorded["val"]["top1"] == best.score
    assert abs(top1 - best.score) <= 1 / len(val) + 1e-9, (top1, best.score)
    assert snapshot(workdir) == before


def test_a_recorded_search_refuses_to_search_or_save(copies):
    workdir = copies[0]
    before = snapshot(workdir)
    tuner = kdas_tf.load_search(workdir)
    with pytest.raises(UserError, match="a recorded search is read-only"):
        tuner.search()
    with pytest.raises(UserError, match="a recorded search is read-only"):
        tuner.oracle.save()
    assert snapshot(workdir) == before


def test_ties_go_to_the_smaller_network_as_in_best_trial(tmp_path):
    """A chief's search (oracle.json and trial files, no tuner0.json) whose three trials all scored 0.5."""
    config = tiny_config(str(tmp_path), "--trials_per_round=3")
    storage.write_json(os.path.join(tmp_path, "settings.json"), config.settings())
    budget, _ = assembly.budget(config)
    served = chief.open_oracle(assembly.make_oracle(config, *assembly.data_metadata(config), budget), str(tmp_path), "search")
    for worker in ("w0", "w1", "w2"):
        trial = served.create_trial(worker)
        served.update_trial(trial.trial_id, {"val_top1": 0.5})
        trial.status = trial_module.TrialStatus.COMPLETED
        served.end_trial(trial)
    parameters = [t.hyperparameters.values["parameters"] for t in served.trials.values()]
    # three sizes, not in the trials' order: KerasTuner's own ranking (ties in file order) would fail below
    assert len(set(parameters)) == 3 and parameters != sorted(parameters), parameters

    tuner = kdas_tf.load_search(str(tmp_path))
    ranked = [hp.values["parameters"] for hp in tuner.get_best_hyperparameters(3)]
    assert ranked == sorted(parameters)
    assert tuner.oracle.get_best_trials(1)[0].trial_id == tuner.oracle.best_trial().trial_id
    assert isinstance(tuner.oracle, RecordedOracle) and isinstance(tuner.oracle, KDASOracle)
    assert not os.path.exists(os.path.join(tmp_path, "search", "tuner0.json"))


def test_a_directory_without_a_search_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match=r"holds no search \(no search/oracle.json\)"):
        kdas_tf.load_search(str(tmp_path))
    assert os.listdir(tmp_path) == []
