"""The served SavedModel: raw uint8 in, the in-memory model's outputs out, loadable without kdas_tf.

The export under test is the one the tiny digits run wrote (WORKDIR/export).
Serving is checked where it happens: a fresh Python process that cannot import
kdas_tf, and saved_model_cli (the graph-mode loader serving systems use).
Tolerance: probabilities within 1e-5 of a float64 softmax of the in-memory
model's logits (float32 graph vs eager kernels differ by ~1e-7); classes equal.
"""

import glob
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdas_tf import data
from kdas_tf.deploy import serving
from kdas_tf.runtime import storage
from conftest import ROOT

pytestmark = pytest.mark.slow

ATOL = 1e-5

# Runs in `python -I` (no cwd, no PYTHONPATH on sys.path) from a directory outside the
# repository; kdas_tf is installed editable in the venv, so a finder refuses it explicitly.
SERVE_WITHOUT_PACKAGE = r"""
import importlib.abc, sys
class RefuseKdas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "kdas_tf" or name.startswith("kdas_tf."):
            raise ModuleNotFoundError(f"No module named {name!r} (refused)")
sys.meta_path.insert(0, RefuseKdas())
try:
    import kdas_tf
except ModuleNotFoundError:
    pass
else:
    sys.exit("kdas_tf was importable")
import numpy as np, tensorflow as tf
export_dir, images_path, out_path = sys.argv[1:]
served = tf.saved_model.load(export_dir)
outputs = served.signatures["serving_default"](images=tf.constant(np.load(images_path)))
np.savez(out_path, probabilities=outputs["probabilities"].numpy(), classes=outputs["classes"].numpy())
assert not any(m.split(".")[0] == "kdas_tf" for m in sys.modules), "loading pulled in kdas_tf"
print("served without kdas_tf")
"""


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"TF_CPP_MIN_LOG_LEVEL": "2"}


def reference(model, images, mean, std):
    """The in-memory model on the same images, normalised and soft-maxed in float64."""
    x = ((images.astype(np.float64) - np.asarray(mean)) / np.asarray(std)).astype(np.float32)
    logits = np.asarray(model(x, training=False), np.float64)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True), logits.argmax(-1)


@pytest.fixture(scope="module")
def served(tiny_run):
    """(workdir, export dir, the in-memory served model, digits info, sample uint8 images [32, 8, 8, 1], labels)."""
    workdir, _ = tiny_run
    exported = storage.read_json(os.path.join(workdir, "results.json"))["exported"]
    model = storage.load_model(os.path.join(workdir, "final", exported, "model.keras"))
    digits = data.load("digits")
    test = digits.splits["test"]
    return workdir, os.path.join(workdir, "export"), model, digits.info, test.images[:32], test.labels[:32]


def test_a_process_that_cannot_import_kdas_tf_serves_the_in_memory_outputs(served, tmp_path):
    _, export_dir, model, info, images, labels = served
    assert images.dtype == np.uint8
    np.save(tmp_path / "images.npy", images)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    run = subprocess.run(
        [sys.executable, "-I", "-c", SERVE_WITHOUT_PACKAGE, export_dir, str(tmp_path / "images.npy"),
         str(tmp_path / "out.npz")], cwd=outside, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "served without kdas_tf" in run.stdout
    out = np.load(tmp_path / "out.npz")
    probabilities, classes = reference(model, images, info.mean, info.std)
    assert out["probabilities"].dtype == np.float32 and out["probabilities"].shape == (32, info.num_classes)
    np.testing.assert_allclose(out["probabilities"], probabilities, atol=ATOL)
    np.testing.assert_array_equal(out["classes"], classes)
    assert (out["classes"] == labels).mean() > 0.2  # a trained digits model, not noise (chance: 0.1)


def test_saved_model_cli_shows_the_signature_and_runs_a_sample(served, tmp_path):
    _, export_dir, model, info, images, _ = served
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    show = subprocess.run([cli, "show", "--dir", export_dir, "--tag_set", "serve", "--signature_def",
                           "serving_default"], capture_output=True, text=True, env=clean_env(), timeout=120)
    assert show.returncode == 0, show.stderr[-2000:]
    assert "inputs['images']" in show.stdout and "DT_UINT8" in show.stdout and "(-1, 8, 8, 1)" in show.stdout
    assert "outputs['probabilities']" in show.stdout and "outputs['classes']" in show.stdout
    np.save(tmp_path / "images.npy", images[:4])
    run = subprocess.run([cli, "run", "--dir", export_dir, "--tag_set", "serve", "--signature_def",
                          "serving_default", "--inputs", f"images={tmp_path / 'images.npy'}",
                          "--outdir", str(tmp_path / "out")], capture_output=True, text=True, env=clean_env(),
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    probabilities, classes = reference(model, images[:4], info.mean, info.std)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "probabilities.npy"), probabilities, atol=ATOL)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "classes.npy"), classes)


def outputs_of(export_dir, images):
    loaded = tf.saved_model.load(export_dir)
    return loaded.signatures["serving_default"](images=tf.constant(images))["probabilities"].numpy()


def test_a_failed_export_leaves_the_previous_good_one_intact(served, tmp_path, monkeypatch):
    _, _, model, info, images, _ = served
    target = str(tmp_path / "export")
    serving.export_saved_model(model, target, mean=info.mean, std=info.std)
    before = {p: open(p, "rb").read() for p in glob.glob(f"{target}/**/*", recursive=True) if os.path.isfile(p)}
    good = outputs_of(target, images)

    # 1. the archive dies half-way through writing
    def write_half_then_die(self, path, **kwargs):
        os.makedirs(os.path.join(path, "variables"))
        open(os.path.join(path, "saved_model.pb"), "wb").write(b"half")
        raise OSError("disk full")

    archive_class = type(keras.export.ExportArchive())  # Keras hands out its backend's subclass
    monkeypatch.setattr(archive_class, "write_out", write_half_then_die)
    other = keras.models.clone_model(model)  # other weights: a wrong export would show
    with pytest.raises(OSError, match="disk full"):
        serving.export_saved_model(other, target, mean=info.mean, std=info.std)
    monkeypatch.undo()

    # 2. the export is written, but moving it into place fails after the old one was moved aside
    real_replace = os.replace

    def fail_moving_the_new_one_in(src, dst):
        if os.path.basename(src).startswith(".export-"):
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(serving.os, "replace", fail_moving_the_new_one_in)
    with pytest.raises(OSError, match="rename failed"):
        serving.export_saved_model(other, target, mean=info.mean, std=info.std)
    monkeypatch.undo()

    after = {p: open(p, "rb").read() for p in glob.glob(f"{target}/**/*", recursive=True) if os.path.isfile(p)}
    assert after == before
    assert os.listdir(tmp_path) == ["export"]  # no staging or set-aside directory left behind
    np.testing.assert_array_equal(outputs_of(target, images), good)

    # and a successful export does replace it
    serving.export_saved_model(other, target, mean=info.mean, std=info.std)
    expected, _ = reference(other, images, info.mean, info.std)
    np.testing.assert_allclose(outputs_of(target, images), expected, atol=ATOL)
    assert os.listdir(tmp_path) == ["export"]


def test_the_export_command_exports_a_checkpoint_directory(served, tmp_path):
    workdir, _, _, info, images, _ = served
    output = str(tmp_path / "from_checkpoint")
    run = subprocess.run([sys.executable, "-m", "kdas_tf.export", f"--workdir={workdir}",
                          "--model=final/kdas_od/checkpoints", f"--output={output}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    # the last epoch's checkpoint holds the weights model.keras was saved with
    model = storage.load_model(os.path.join(workdir, "final", "kdas_od", "model.keras"))
    expected, _ = reference(model, images, info.mean, info.std)
    np.testing.assert_allclose(outputs_of(output, images), expected, atol=ATOL)
    metadata = json.load(open(os.path.join(output, serving.METADATA)))
    assert metadata["source"].startswith(os.path.join(workdir, "final", "kdas_od", "checkpoints", "ckpt-"))
    assert metadata["inputs"]["images"] == {"dtype": "uint8", "shape": [None, 8, 8, 1]}

    missing = subprocess.run([sys.executable, "-m", "kdas_tf.export", f"--workdir={workdir}", "--model=final/nothing"],
                             cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("error: --model='final/nothing' exists neither")

    other = subprocess.run([sys.executable, "-m", "kdas_tf.export", f"--workdir={workdir}",
                            "--model=final/kdas_od/checkpoints", "--architecture=resnet14", f"--output={output}_x"],
                           cwd=ROOT, capture_output=True, text=True, timeout=180)
    last = other.stderr.strip().splitlines()[-1]
    assert other.returncode == 2 and "Traceback" not in other.stderr and not os.path.exists(f"{output}_x")
    assert last.startswith("error: checkpoint ") and last.endswith("pass the right --architecture")
    assert "does not hold a resnet14" in last and "{{" not in last


def test_a_checkpoint_is_rebuilt_with_the_shortcut_its_run_recorded(tmp_path):
    """Results of the training first, then the settings of its teachers/ or run; a settings.json from before
    --shortcut means projection, and nothing recorded means the default."""
    workdir = tmp_path / "run"
    final, member, bare = workdir / "final" / "kdas_od", workdir / "teachers" / "member_0", workdir / "train" / "x"
    for directory in (final, member, bare):
        directory.mkdir(parents=True)
    assert serving.shortcut_of(str(bare), str(workdir)) == "zero_pad"
    storage.write_json(str(workdir / "settings.json"), {"dataset": "digits"})
    assert serving.shortcut_of(str(bare), str(workdir)) == "projection"
    storage.write_json(str(workdir / "teachers" / "settings.json"), {"shortcut": "zero_pad"})
    assert serving.shortcut_of(str(member), str(workdir)) == "zero_pad"
    storage.write_json(str(final / "results.json"), {"architecture": "resnet8", "shortcut": "zero_pad"})
    assert serving.shortcut_of(str(final), str(workdir)) == "zero_pad"
