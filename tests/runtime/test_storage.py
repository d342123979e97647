"""kdas_tf.runtime.storage: a write that fails half-way keeps the old file and leaves no temporary behind."""

import os

import keras
import numpy as np
import pytest

from kdas_tf.runtime import storage


def names(directory):
    return sorted(os.listdir(directory))


def test_write_bytes_replaces_the_file_and_keeps_its_mode_readable(tmp_path):
    path = tmp_path / "results.json"
    path.write_bytes(b"old")
    storage.write_bytes(str(path), b"new contents")
    assert path.read_bytes() == b"new contents"
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert names(tmp_path) == ["results.json"]


def test_a_write_that_fails_after_writing_part_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_bytes(b"old results")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    # fsync comes after the new bytes are written: the failure is half-way through the write.
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        storage.write_bytes(str(path), b"new results, never complete")
    assert path.read_bytes() == b"old results"
    assert names(tmp_path) == ["results.json"]


def test_content_that_cannot_be_written_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old report")
    with pytest.raises(TypeError):
        storage.write_bytes(str(path), "text where bytes belong")
    assert path.read_text() == "old report"
    assert names(tmp_path) == ["report.md"]


def tiny_model(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def test_a_failed_save_model_keeps_the_old_model_and_no_temporary(tmp_path, monkeypatch):
    path = str(tmp_path / "teacher.keras")
    old = tiny_model(0)
    storage.save_model(old, path)
    assert names(tmp_path) == ["teacher.keras"]

    new = tiny_model(1)

    def save_then_crash(target, *args, **kwargs):
        with open(target, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise OSError("killed while saving")

    monkeypatch.setattr(new, "save", save_then_crash)
    with pytest.raises(OSError, match="killed while saving"):
        storage.save_model(new, path)
    assert names(tmp_path) == ["teacher.keras"]
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(np.asarray(storage.load_model(path)(x)), np.asarray(old(x)))


def test_a_damaged_model_file_is_refused_in_one_line_before_it_is_loaded(tmp_path):
    path = str(tmp_path / "model.keras")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(400)]).save(path)
    storage.check_model_file(path)  # a good file passes
    content = open(path, "rb").read()
    for name, damaged in (("flipped", content[:len(content) // 2] + bytes([content[len(content) // 2] ^ 1])
                           + content[len(content) // 2 + 1:]), ("truncated", content[:-100])):
        open(tmp_path / name, "wb").write(damaged)
        with pytest.raises(storage.UserError, match=f"{name} is not a readable Keras model .*: it may be corrupt"):
            storage.check_model_file(str(tmp_path / name))
        with pytest.raises(storage.UserError, match=f"{name} is not a readable Keras model"):
            storage.load_model(str(tmp_path / name))  # what the check spares a run from finding later
