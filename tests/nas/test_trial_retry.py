"""A trial that meets a fault of the machine (a full disk, out of memory, a corrupt checkpoint) is trained again
and ends as if nothing had happened; a NaN loss fails its trial at once; a fault that persists fails the trial
after the retries, and no fault ever reaches the controller as a reward."""

import collections
import errno
import json
import os
import shutil

import pytest
import tensorflow as tf
from conftest import TINY_RUN_EXTRA, tiny_config
from keras_tuner.engine import trial as trial_module

from kdas_tf import _internals, data, models, pipeline
from kdas_tf.nas.oracle import MAX_FAULT_RETRIES, KDASOracle
from kdas_tf.distill.trainer import TrainConfig, Trainer, UnreadableCheckpointError
from kdas_tf.nas.tuner import KDASTuner

CONFIG = TrainConfig(epochs=1, batch_size=64, learning_rate=0.05)
COMPLETED, FAILED = trial_module.TrialStatus.COMPLETED, trial_module.TrialStatus.FAILED


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


class CountingTuner(KDASTuner):
    """KDASTuner that counts how often each trial is run."""

    def __init__(self, *args, **kwargs):
        self.attempts = collections.Counter()
        super().__init__(*args, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        self.attempts[trial.trial_id] += 1
        return super().run_trial(trial, *args, **kwargs)


def one_trial_search(digits, tmp_path, config=CONFIG):
    """A search of one trial (trial 0) on digits, not yet run."""
    budget = 3 * models.count_parameters("resnet8", 10, (8, 8, 1))
    oracle = KDASOracle(backbone="resnet8", num_classes=10, input_shape=(8, 8, 1), budget=budget,
                        trials_per_round=1, seed=0)
    tuner = CountingTuner(oracle, dataset=digits, config=config, strategy=tf.distribute.get_strategy(),
                          directory=str(tmp_path), project_name="search")
    tuner.oracle.verbose = 0
    return oracle, tuner


def failing(method, error, times):
    """`method` that raises `error` on its first `times` calls, then works."""
    calls = collections.Counter()

    def method_or_fault(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return method(*args, **kwargs)

    return method_or_fault


def test_a_full_disk_at_the_first_checkpoint_is_retried_and_the_search_ends_as_an_undisturbed_one(
        tiny_run, tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    shutil.copytree(tiny_run[0], workdir)
    shutil.rmtree(os.path.join(workdir, "search"))  # the teachers and the final rows are read back
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(tf.train.CheckpointManager, "save", failing(tf.train.CheckpointManager.save, full, 1))
    summary = pipeline.run(tiny_config(workdir, *TINY_RUN_EXTRA))
    undisturbed = tiny_run[1]
    assert [(t["trial_id"], t["status"], t["architecture"]) for t in summary["trials"]] == \
        [(t["trial_id"], t["status"], t["architecture"]) for t in undisturbed["trials"]]
    assert [t["val_top1"] for t in summary["trials"]] == pytest.approx([t["val_top1"] for t in undisturbed["trials"]])
    assert all(t["message"] is None for t in summary["trials"])
    assert summary["controller"] == undisturbed["controller"]  # the fault sent the controller no reward
    assert summary["found_architecture"] == undisturbed["found_architecture"]
    assert summary["final"] == undisturbed["final"]  # a finished row of another architecture would be refused
    state = json.load(open(os.path.join(workdir, "search", "oracle.json")))
    assert state["run_times"] == {"0": 2, "1": 1}  # trial 0 trained twice
    trial = json.load(open(os.path.join(workdir, "search", "trial_0", "trial.json")))
    assert trial["status"] == COMPLETED and trial["message"] is None


def test_an_out_of_memory_step_is_retried_and_the_trial_completes_with_an_empty_message(digits, tmp_path,
                                                                                          monkeypatch):
    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape [64,16,8,8]")
    monkeypatch.setattr(Trainer, "train_epoch", failing(Trainer.train_epoch, oom, 1))
    oracle, tuner = one_trial_search(digits, tmp_path)
    tuner.search()
    trial = oracle.trials["0"]
    assert tuner.attempts["0"] == 2
    assert trial.status == COMPLETED and trial.message is None and 0 <= trial.score <= 1
    assert oracle.trial_updates == 1  # the finished trial's reward, none for the fault


def test_a_fault_that_persists_fails_the_trial_after_the_retries_and_teaches_nothing(digits, tmp_path,
                                                                                       monkeypatch):
    broken = OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(Trainer, "train_epoch", failing(Trainer.train_epoch, broken, 100))
    oracle, tuner = one_trial_search(digits, tmp_path)
    tuner.search()
    trial = oracle.trials["0"]
    assert tuner.attempts["0"] == 1 + MAX_FAULT_RETRIES
    assert trial.status == FAILED and "Input/output error" in trial.message
    assert oracle.trial_updates == 0 and oracle.known_scores == {}


def test_a_nan_loss_fails_the_trial_at_once_in_one_warning_line_without_a_traceback(digits, tmp_path, capfd, caplog):
    oracle, tuner = one_trial_search(digits, tmp_path, TrainConfig(epochs=1, batch_size=64, learning_rate=1e30,
                                                                   lr_decay_at=()))
    tuner.search()
    trial = oracle.trials["0"]
    assert tuner.attempts["0"] == 1
    assert trial.status == FAILED and "the training loss became nan" in trial.message
    assert oracle.trial_updates == 0
    assert "Traceback" not in capfd.readouterr().err  # KerasTuner printed two, chained, before
    assert [r.getMessage() for r in caplog.records if "the training loss became nan" in r.getMessage()] == [
        f"trial 0 failed: trial 0: the training loss became nan at epoch 1; lower --learning_rate (now 1e+30) and "
        f"rerun: training resumes from the last finite checkpoint; recorded FAILED, without a reward (traceback: "
        f"{tmp_path}/search/trial_0/trial.json)"]


DAMAGES = {
    "an index that is not an sstable": lambda d: open(os.path.join(d, "ckpt-1.index"), "wb").write(b"garbage"),
    "a truncated data file": lambda d: open(os.path.join(d, "ckpt-1.data-00000-of-00001"), "wb").write(b"x"),
    "a 'checkpoint' file that names nothing": lambda d: open(os.path.join(d, "checkpoint"), "w").write("{{{"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_each_kind_of_checkpoint_damage_is_reported_unreadable_with_its_directory(digits, tmp_path, damage):
    model = models.build_student("resnet8:conv3x3/skip/skip", 10, (8, 8, 1))
    Trainer(model, digits, CONFIG, workdir=str(tmp_path))._manager.save(checkpoint_number=1)
    DAMAGES[damage](str(tmp_path / "checkpoints"))
    same = models.build_student("resnet8:conv3x3/skip/skip", 10, (8, 8, 1))
    with pytest.raises(UnreadableCheckpointError) as raised:
        Trainer(same, digits, CONFIG, workdir=str(tmp_path)).restore()
    assert raised.value.directory == str(tmp_path / "checkpoints")


def test_a_corrupt_checkpoint_is_moved_aside_and_the_trial_trains_from_scratch(digits, tmp_path, monkeypatch):
    two_epochs = TrainConfig(epochs=2, batch_size=64, learning_rate=0.05)
    train_epoch = Trainer.train_epoch
    epochs, kill = [], [True]

    def recorded_epoch(trainer, epoch, **kwargs):
        epochs.append(epoch)
        if epoch == 1 and kill.pop():
            raise KeyboardInterrupt  # the search is killed after epoch 1's checkpoint
        return train_epoch(trainer, epoch, **kwargs)

    monkeypatch.setattr(Trainer, "train_epoch", recorded_epoch)
    with pytest.raises(KeyboardInterrupt):
        one_trial_search(digits, tmp_path, two_epochs)[1].search()
    checkpoints = tmp_path / "search" / "trial_0" / "checkpoints"
    DAMAGES["an index that is not an sstable"](str(checkpoints))
    damaged = {name: (checkpoints / name).read_bytes() for name in os.listdir(checkpoints)}
    epochs.clear()
    kill.append(False)
    oracle, tuner = one_trial_search(digits, tmp_path, two_epochs)  # the same command again: it resumes
    tuner.search()
    trial = oracle.trials["0"]
    assert tuner.attempts["0"] == 2 and epochs == [0, 1]  # the retry trained both epochs: from scratch
    assert trial.status == COMPLETED and trial.message is None
    aside = tmp_path / "search" / "trial_0" / "checkpoints.corrupt-1"
    assert {name: (aside / name).read_bytes() for name in os.listdir(aside)} == damaged  # kept as it was
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-2")


def test_an_invalid_end_is_handed_out_again_teaches_nothing_and_the_completed_trial_keeps_no_message(tmp_path):
    """The oracle's side alone, as a worker (or the in-process loop) reports a fault, then the retry's reward."""
    budget = 3 * models.count_parameters("resnet8", 10, (8, 8, 1))
    oracle = KDASOracle(backbone="resnet8", num_classes=10, input_shape=(8, 8, 1), budget=budget,
                        trials_per_round=2, seed=0)
    _internals.set_project_dir(oracle, str(tmp_path), "search")
    trial = oracle.create_trial("w0")
    trial.status, trial.message = trial_module.TrialStatus.INVALID, "OSError: [Errno 28] No space left on device"
    oracle.end_trial(trial)
    assert oracle.trial_updates == 0 and oracle.known_scores == {} and oracle.end_order == []
    again = oracle.create_trial("w1")
    assert again.trial_id == trial.trial_id  # before any new sample
    oracle.update_trial(again.trial_id, {"val_top1": 0.5})
    again.status = COMPLETED
    oracle.end_trial(again)
    recorded = json.load(open(tmp_path / "search" / f"trial_{trial.trial_id}" / "trial.json"))
    assert recorded["status"] == COMPLETED and recorded["message"] is None and recorded["score"] == 0.5
    assert oracle.trial_updates == 1 and oracle.end_order == [trial.trial_id]
