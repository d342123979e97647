"""KDASTuner with real training on digits: a trial whose loss turns NaN fails alone, and a search whose
trials all fail stops with one clear line."""

import dataclasses

import pytest
import tensorflow as tf
from keras_tuner.engine import trial as trial_module

from kdas_tf import data, models
from kdas_tf.errors import UserError
from kdas_tf.nas.oracle import KDASOracle
from kdas_tf.distill.trainer import TrainConfig
from kdas_tf.nas.tuner import KDASTuner

CONFIG = TrainConfig(epochs=1, batch_size=64, learning_rate=0.05)


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


class DivergingTuner(KDASTuner):
    """Trains the trials named in `diverge` at a learning rate that makes the loss NaN."""

    def __init__(self, *args, diverge=(), **kwargs):
        self.diverge = set(diverge)
        super().__init__(*args, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        normal = self.train_config
        if trial.trial_id in self.diverge:
            self.train_config = dataclasses.replace(normal, learning_rate=1e30, lr_decay_at=())
        try:
            return super().run_trial(trial, *args, **kwargs)
        finally:
            self.train_config = normal


def search(digits, tmp_path, diverge):
    budget = 3 * models.count_parameters("resnet8", 10, (8, 8, 1))
    oracle = KDASOracle(backbone="resnet8", num_classes=10, input_shape=(8, 8, 1), budget=budget,
                        trials_per_round=3, seed=0)
    tuner = DivergingTuner(oracle, dataset=digits, config=CONFIG, strategy=tf.distribute.get_strategy(),
                           diverge=diverge, directory=str(tmp_path), project_name="search")
    tuner.oracle.verbose = 0
    return oracle, tuner


def test_a_nan_trial_is_recorded_failed_with_its_reason_and_the_search_goes_on(digits, tmp_path):
    oracle, tuner = search(digits, tmp_path, diverge={"1"})
    tuner.search()
    trials = oracle.trials
    assert trials["1"].status == trial_module.TrialStatus.FAILED
    assert "the training loss became nan" in trials["1"].message
    assert [trials[i].status for i in ("0", "2")] == [trial_module.TrialStatus.COMPLETED] * 2
    assert oracle.trial_updates == 2  # no fake reward for the failed trial
    failed_arch = str(models.Architecture.parse(trials["1"].hyperparameters.values["architecture"]).canonical())
    assert failed_arch not in oracle.known_scores


def test_a_search_whose_trials_all_fail_stops_with_one_clear_line(digits, tmp_path):
    oracle, tuner = search(digits, tmp_path, diverge={"0", "1", "2"})
    with pytest.raises(UserError) as raised:
        tuner.search()
    message = str(raised.value)
    assert "\n" not in message
    assert "the last 3 trials failed" in message and "nan" in message and "lower --learning_rate" in message
    assert oracle.trial_updates == 0


def test_every_trial_is_built_in_the_precision_the_search_runs_in(digits, tmp_path, monkeypatch):
    import keras

    from kdas_tf.nas import tuner as tuner_module

    built_with = []
    build_student = tuner_module.models.build_student

    def recording_build_student(*args, **kwargs):
        built_with.append(keras.mixed_precision.global_policy().name)
        return build_student(*args, **kwargs)

    monkeypatch.setattr(tuner_module.models, "build_student", recording_build_student)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        oracle, tuner = search(digits, tmp_path, diverge=())
        tuner.search()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert built_with == ["mixed_bfloat16"] * 3  # the session reset between trials must not drop it
