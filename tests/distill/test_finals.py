"""finals.train_architecture: a finished training is read back, never mixed up with another one."""

import json

import pytest

from kdas_tf import models
from kdas_tf.distill.finals import train_architecture
from kdas_tf.distill.trainer import TrainConfig

# What a finished training records besides its architecture, loss and shortcut (schema.FINAL_ROW).
FINISHED = {"epochs": 1, "parameters": 1000, "val": {"loss": 1.0, "top1": 0.5, "top5": 0.9},
            "test": {"loss": 1.0, "top1": 0.5, "top5": 0.9}}


def test_a_directory_finished_with_another_architecture_is_refused_not_reused(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"finished")
    (tmp_path / "results.json").write_text(json.dumps(
        {**FINISHED, "architecture": "resnet8:conv3x3/skip/skip", "loss": "od", "shortcut": "zero_pad"}))
    with pytest.raises(ValueError, match="holds a finished resnet8:conv3x3/skip/skip .zero_pad shortcuts. trained "
                                         "with od, not resnet8 .zero_pad shortcuts."):
        train_architecture(models.Architecture("resnet8"), None, TrainConfig(loss="od"), strategy=None,
                           workdir=str(tmp_path))
    same = train_architecture(models.Architecture.parse("resnet8:conv3x3/skip/skip"), None, TrainConfig(loss="od"),
                              strategy=None, workdir=str(tmp_path))
    assert same["architecture"] == "resnet8:conv3x3/skip/skip"


def test_a_training_finished_before_the_shortcut_was_recorded_holds_projections(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"finished")
    (tmp_path / "results.json").write_text(json.dumps({**FINISHED, "architecture": "resnet8", "loss": "ce"}))
    with pytest.raises(ValueError, match=r"resnet8 \(projection shortcuts\) trained with ce, not resnet8 "
                                         r"\(zero_pad shortcuts\)"):
        train_architecture(models.Architecture("resnet8"), None, TrainConfig(loss="ce"), strategy=None,
                           workdir=str(tmp_path))
    same = train_architecture(models.Architecture("resnet8"), None, TrainConfig(loss="ce"), strategy=None,
                              workdir=str(tmp_path), shortcut="projection")
    assert same["loss"] == "ce"
