"""The tiny run's TensorBoard tree, read with TensorBoard's own event reader: every named curve is there.

One tree, WORKDIR/tb: teachers, each trial (with its reward, architecture and
HParams session), the controller (baseline, entropy, per-choice probability),
the final trainings and the search's best architecture.
"""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from kdas_tf import models
from kdas_tf.runtime import storage

pytestmark = pytest.mark.slow

TRAINING = {"train/loss", "train/top1", "train/top5", "val/loss", "val/top1", "val/top5", "learning_rate",
            "images_per_second"}


def read_run(directory):
    """{tag: [(step, value)]} for tensor summaries, plus the accumulator for plugin data."""
    accumulator = EventAccumulator(directory, size_guidance={"tensors": 0})
    accumulator.Reload()
    values = {tag: [(e.step, tf.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)]
              for tag in accumulator.Tags()["tensors"]}
    return values, accumulator


@pytest.fixture(scope="module")
def workdir(tiny_run):
    return tiny_run[0]


def test_every_log_lives_under_one_tree(workdir):
    events = [os.path.relpath(p, workdir) for p in glob.glob(os.path.join(workdir, "**", "events.out.tfevents.*"),
                                                            recursive=True)]
    runs = {os.path.dirname(p) for p in events}
    assert all(p.startswith("tb" + os.sep) for p in events), events
    assert runs == {"tb/teachers/member_0", "tb/teachers/member_1", "tb/trials", "tb/trials/trial_0",
                    "tb/trials/trial_1", "tb/controller", "tb/final/student_ce", "tb/final/kdas_kd", "tb/final/kdas_od",
                    "tb/search"}


@pytest.mark.parametrize("run", ["teachers/member_1", "trials/trial_0", "final/kdas_od", "final/student_ce"])
def test_trainings_log_losses_accuracies_rate_and_speed_per_epoch(workdir, run):
    values, _ = read_run(os.path.join(workdir, "tb", run))
    assert TRAINING <= set(values)
    epochs = 1 if run.startswith("trials") else 2
    for tag in TRAINING:
        assert [step for step, _ in values[tag]] == list(range(1, epochs + 1)), tag
        assert all(np.isfinite(v) for _, v in values[tag])
    # the rate each epoch trained with: digits.cfg's 0.05, divided by 10 from the middle of training
    assert [v for _, v in values["learning_rate"]] == pytest.approx([0.05, 0.005][:epochs])
    assert all(v > 0 for _, v in values["images_per_second"])


def test_each_trial_logs_its_reward_architecture_and_hparams_session(workdir):
    for trial_json in sorted(glob.glob(os.path.join(workdir, "search", "trial_*", "trial.json"))):
        trial = storage.read_json(trial_json)
        trial_values = trial["hyperparameters"]["values"]
        values, accumulator = read_run(os.path.join(workdir, "tb", "trials", f"trial_{trial['trial_id']}"))
        assert values["reward"] == [(0, pytest.approx(trial["score"]))]
        assert values["architecture"][0][1].item().decode() == trial_values["architecture"]
        session = hparams_metadata.parse_session_start_info_plugin_data(
            accumulator.SummaryMetadata(hparams_metadata.SESSION_START_INFO_TAG).plugin_data.content)
        logged = session.hparams
        assert logged["architecture"].string_value == trial_values["architecture"]
        assert logged["parameters"].number_value == trial_values["parameters"]
        assert logged["round"].number_value == 0
        for slot in ("stage1_op1", "stage3_op2"):
            assert logged[slot].string_value == trial_values[slot]


def test_the_hparams_experiment_names_the_search_space_and_the_reward(workdir):
    _, accumulator = read_run(os.path.join(workdir, "tb", "trials"))
    experiment = hparams_metadata.parse_experiment_plugin_data(
        accumulator.SummaryMetadata(hparams_metadata.EXPERIMENT_TAG).plugin_data.content)
    names = {h.name for h in experiment.hparam_infos}
    assert names == {"architecture", "parameters", "round"} | {f"stage{s}_op{o}" for s in (1, 2, 3) for o in (1, 2)}
    slot = next(h for h in experiment.hparam_infos if h.name == "stage2_op1")
    assert sorted(slot.domain_discrete.values[i].string_value for i in range(7)) == sorted(models.ADDON_OPS)
    assert [m.name.tag for m in experiment.metric_infos] == ["reward"]


def test_the_controller_logs_baseline_entropy_and_every_choice_probability(workdir):
    values, _ = read_run(os.path.join(workdir, "tb", "controller"))
    for tag in ("controller/baseline", "controller/entropy", "controller/reward", "controller/loss"):
        assert values[tag] and all(np.isfinite(v) for _, v in values[tag]), tag
    state = storage.read_json(os.path.join(workdir, "search", "oracle.json"))["kdas"]
    updates = state["trial_updates"] + state["repeat_updates"]
    assert state["trial_updates"] == 2
    assert len(values["controller/baseline"]) == len(values["controller/entropy"]) == updates  # one point per update
    for stage in (1, 2, 3):
        for slot in (1, 2):
            per_op = [values[f"choice_probability/stage{stage}_op{slot}/{op}"] for op in models.ADDON_OPS]
            # at every update the seven probabilities of one decision form a distribution
            for step_values in zip(*per_op):
                assert sum(v for _, v in step_values) == pytest.approx(1.0, abs=1e-5)


def test_the_search_logs_the_best_architecture_as_text(workdir):
    values, _ = read_run(os.path.join(workdir, "tb", "search"))
    found = storage.read_json(os.path.join(workdir, "results.json"))["found_architecture"]
    text = values["best_architecture"][-1][1].item().decode()
    assert f"`{found}`" in text and "budget" in text
    trial_scores = [storage.read_json(p)["score"] for p in glob.glob(os.path.join(workdir, "search", "trial_*", "trial.json"))]
    assert values["best_reward"][-1][1] == pytest.approx(max(trial_scores))


@pytest.mark.parametrize("soft", [None, 0.9183])
def test_the_search_result_names_the_top1_and_under_a_soft_objective_its_reward_beside_it(tmp_path, soft):
    """Under --cost_exponent the controller's reward is not the top-1: the result says both, each by its name."""
    from kdas_tf.nas import summaries

    summaries.write_search_result(str(tmp_path), best_architecture="resnet8:conv3x3/skip/skip", best_reward=0.9,
                                  parameters=150_000, budget=200_000, trials=4, soft_reward=soft)
    values, _ = read_run(str(tmp_path))
    text = values["best_architecture"][-1][1].item().decode()
    assert values["best_reward"][-1][1] == pytest.approx(0.9)
    if soft is None:
        assert "| val top-1 (reward) | 90.00% |" in text and "best_soft_reward" not in values
    else:
        assert "| val top-1 | 90.00% |" in text and "| reward, val top-1 x (cost / M)^w | 91.83% |" in text
        assert values["best_soft_reward"][-1][1] == pytest.approx(soft)
