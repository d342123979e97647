"""LiteRT exports (--formats=tflite,tflite_int8): checked against the SavedModel, tabled, refused when wrong.

The exports are made by `python -m kdas_tf.export` from a copy of the tiny digits run (conftest's tiny_run).
Every number of deployment.json is recomputed here by an independent pass over the 300 test images: the
SavedModel through tf.saved_model.load, each .tflite through ai_edge_litert's interpreter one image at a
time (the export checks in batches). Counts are compared exactly (tolerance 1e-9 on the fractions); the
float .tflite's probabilities must match the SavedModel's within 1e-5 (float32 kernels of XNNPACK and
TensorFlow differ by ~1e-7). A rerun of the search with --formats passes them to its export.
"""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from conftest import ROOT, TINY_RUN_EXTRA, tiny_config
from kdas_tf import data, pipeline
from kdas_tf.deploy import litert, serving
from kdas_tf.reporting import writer
from kdas_tf.runtime import storage
from kdas_tf.errors import UserError
from kdas_tf.runtime.workdir import Workdir, served_model_path

pytestmark = pytest.mark.slow

FORMATS = "saved_model,tflite,tflite_int8"
EXACT = 1e-9
PROBABILITY_ATOL = 1e-5

# python -m kdas_tf.export with a converter fault: every .tflite is converted from OTHER (a SavedModel of
# re-initialised weights) instead of the export it should be, which the agreement check must catch.
EXPORT_WITH_A_WRONG_CONVERTER = r"""
import sys
from kdas_tf import cli
from kdas_tf import export
from kdas_tf.deploy import litert
other = sys.argv.pop(1)
convert = litert.convert
litert.convert = lambda saved_model_dir, signature, **kwargs: convert(other, signature, **kwargs)
export.define_flags()
cli.run(export.main)
"""


def files_of(directory):
    return {os.path.relpath(os.path.join(root, f), directory): open(os.path.join(root, f), "rb").read()
            for root, _, names in os.walk(directory) for f in names}


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """(copy of the tiny run with export/ in every format, the export command's stderr, digits)."""
    workdir = str(tmp_path_factory.mktemp("litert") / "run")
    shutil.copytree(tiny_run[0], workdir)
    run = subprocess.run([sys.executable, "-m", "kdas_tf.export", f"--workdir={workdir}", f"--formats={FORMATS}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir, run.stderr, data.load("digits")


def tflite_outputs(path, images):
    """One image at a time through ai_edge_litert's signature runner: {name: [N, ...]}."""
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    outputs = [runner(images=image[None]) for image in images]
    return {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}


def test_each_format_is_checked_against_the_saved_model_on_the_whole_test_split(exported):
    workdir, _, digits = exported
    export_dir = os.path.join(workdir, "export")
    test = digits.splits["test"]
    served = tf.saved_model.load(export_dir).signatures["serving_default"](images=tf.constant(test.images))
    saved_classes, saved_probabilities = served["classes"].numpy(), served["probabilities"].numpy()
    table = storage.read_json(os.path.join(export_dir, "deployment.json"))
    rows = {row["format"]: row for row in table["rows"]}
    assert table["test_examples"] == len(test) == 300
    assert abs(rows["saved_model"]["test_top1"] - np.mean(saved_classes == test.labels)) < EXACT
    assert rows["saved_model"]["agreement"] == 1.0
    for name, file in litert.FILES.items():
        out = tflite_outputs(os.path.join(export_dir, file), test.images)
        agreement = np.mean(out["classes"] == saved_classes)
        assert abs(rows[name]["agreement"] - agreement) < EXACT, name
        assert abs(rows[name]["test_top1"] - np.mean(out["classes"] == test.labels)) < EXACT, name
        assert abs(rows[name]["saved_model_test_top1"] - np.mean(saved_classes == test.labels)) < EXACT
        assert agreement >= litert.MIN_AGREEMENT[name] and rows[name]["min_agreement"] == litert.MIN_AGREEMENT[name]
    float_out = tflite_outputs(os.path.join(export_dir, "model.tflite"), test.images)
    np.testing.assert_allclose(float_out["probabilities"], saved_probabilities, atol=PROBABILITY_ATOL)
    assert np.mean(saved_classes == test.labels) > 0.5  # a trained model (chance: 0.1), or agreement says little


def test_the_litert_files_keep_the_signatures_names_and_uint8_input(exported):
    export_dir = os.path.join(exported[0], "export")
    for file in litert.FILES.values():
        interpreter = Interpreter(model_path=os.path.join(export_dir, file))
        assert interpreter.get_signature_list() == {
            "serving_default": {"inputs": ["images"], "outputs": ["classes", "probabilities"]}}
        runner = interpreter.get_signature_runner("serving_default")
        images = runner.get_input_details()["images"]
        assert images["dtype"] == np.uint8 and list(images["shape_signature"]) == [-1, 8, 8, 1], file
        outputs = runner.get_output_details()
        assert outputs["probabilities"]["dtype"] == np.float32 and outputs["classes"]["dtype"] == np.int64


def test_the_deployment_table_has_a_row_per_format_with_its_file_size_and_latency(exported):
    workdir, stderr, _ = exported
    export_dir = os.path.join(workdir, "export")
    table = storage.read_json(os.path.join(export_dir, "deployment.json"))
    assert [row["format"] for row in table["rows"]] == FORMATS.split(",")
    rows = {row["format"]: row for row in table["rows"]}
    for name, file in litert.FILES.items():
        assert rows[name]["size_kb"] == os.path.getsize(os.path.join(export_dir, file)) / 1024
    assert rows["saved_model"]["size_kb"] == litert.saved_model_bytes(export_dir) / 1024
    assert rows["tflite_int8"]["size_kb"] < 0.5 * rows["tflite"]["size_kb"]  # int8 weights: a quarter, plus graph
    assert all(0 < row["latency_ms"] < 1000 for row in table["rows"])
    assert table["latency"]["runs"] == litert.LATENCY_RUNS and table["interpreter"].startswith("ai_edge_litert")
    markdown = open(os.path.join(export_dir, "deployment.md")).read().splitlines()
    assert table["calibration"] == {"split": "train", "images": litert.REPRESENTATIVE_IMAGES,
                                    "of": len(exported[2].splits["train"]), "seed": 0}
    assert markdown[0].startswith("| format | size KB |") and len(markdown) == 2 + 3
    assert markdown[3].startswith(f"| tflite | {rows['tflite']['size_kb']:.2f} | {100 * rows['tflite']['test_top1']:.2f} |")
    assert json.load(open(os.path.join(export_dir, serving.METADATA)))["formats"] == FORMATS.split(",")
    assert "Traceback" not in stderr and "tf.lite.Interpreter is deprecated" not in stderr

    written = writer.write_report(workdir, str(os.path.join(workdir, "report_with_deployment")))
    report = open(written[-1]).read()
    assert "## Deployment: export/ (300 test images; int8 calibrated on 300 train images; latency" in report
    assert "\n".join(markdown[2:]) in report


def test_int8_is_calibrated_on_training_images_never_on_the_test_images_that_judge_it(exported, tmp_path,
                                                                                     monkeypatch):
    """The images the converter calibrates int8 on, caught as it receives them, are each a training image (by
    content: digits' test images are other pictures); the export command's int8 file is the one they make."""
    workdir, _, digits = exported
    calibrated = []
    convert = litert.convert

    def recording_convert(directory, signature, *, representative=None):
        calibrated.append(representative)
        return convert(directory, signature, representative=representative)

    monkeypatch.setattr(litert, "convert", recording_convert)
    target = str(tmp_path / "int8")
    serving.export_served(storage.load_model(served_model_path(Workdir(workdir))), target, dataset=digits,
                          formats=("tflite_int8",))
    (images,) = calibrated
    pictures = {split: {image.tobytes() for image in digits.splits[split].images} for split in ("train", "test")}
    assert len(pictures["test"] - pictures["train"]) > 250  # the splits are told apart by content
    assert images.dtype == np.uint8 and len(images) == litert.REPRESENTATIVE_IMAGES
    assert all(image.tobytes() in pictures["train"] for image in images)
    table = storage.read_json(os.path.join(target, "deployment.json"))
    assert table["calibration"]["split"] == "train" and table["calibration"]["images"] == len(images)
    made = open(os.path.join(target, "model_int8.tflite"), "rb").read()
    assert made == open(os.path.join(workdir, "export", "model_int8.tflite"), "rb").read()


def test_the_report_reads_a_deployment_table_written_before_calibration_was_recorded(exported, tmp_path):
    workdir = str(tmp_path / "run")
    os.makedirs(os.path.join(workdir, "export"))
    shutil.copy(os.path.join(exported[0], "results.json"), workdir)
    table = storage.read_json(os.path.join(exported[0], "export", "deployment.json"))
    old = {key: value for key, value in table.items() if key != "calibration"} | {"representative_images": 300}
    storage.write_json(os.path.join(workdir, "export", "deployment.json"), old)
    report = open(writer.write_report(workdir)[-1]).read()
    assert "## Deployment: export/ (300 test images; latency: median of 50" in report


def test_a_wrong_conversion_is_refused_in_one_line_and_the_old_export_stays(exported, tmp_path):
    workdir = exported[0]
    export_dir = os.path.join(workdir, "export")
    before = files_of(export_dir)
    model = storage.load_model(served_model_path(Workdir(workdir)))
    keras.utils.set_random_seed(0)
    info = exported[2].info
    other = serving.export_saved_model(keras.models.clone_model(model), str(tmp_path / "other"), mean=info.mean,
                                       std=info.std)
    run = subprocess.run([sys.executable, "-c", EXPORT_WITH_A_WRONG_CONVERTER, other, f"--workdir={workdir}",
                          "--formats=saved_model,tflite"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --formats=tflite: the LiteRT model agrees with the SavedModel on ")
    assert "(below 99%;" in last and last.endswith("nothing was written; --force_export writes it anyway")
    assert "Traceback" not in run.stderr
    assert files_of(export_dir) == before


def test_force_export_writes_a_disagreeing_conversion_and_records_it(exported, tmp_path, monkeypatch):
    workdir, _, digits = exported
    model = storage.load_model(served_model_path(Workdir(workdir)))
    keras.utils.set_random_seed(0)
    other = serving.export_saved_model(keras.models.clone_model(model), str(tmp_path / "other"),
                                       mean=digits.info.mean, std=digits.info.std)
    convert = litert.convert
    monkeypatch.setattr(litert, "convert", lambda directory, signature, **kwargs: convert(other, signature, **kwargs))
    target = str(tmp_path / "forced")
    with pytest.raises(UserError, match="agrees with the SavedModel on"):
        serving.export_served(model, target, dataset=digits, formats=("tflite",))
    assert not os.path.exists(target)
    serving.export_served(model, target, dataset=digits, formats=("tflite",), force=True)
    table = storage.read_json(os.path.join(target, "deployment.json"))
    assert table["forced"] and [row["format"] for row in table["rows"]] == ["tflite"]
    assert table["rows"][0]["agreement"] < litert.MIN_AGREEMENT["tflite"]
    # tflite alone: the SavedModel was the conversion's source and reference, and is not kept
    assert sorted(os.listdir(target)) == ["deployment.json", "deployment.md", serving.METADATA, "model.tflite"]


def test_the_search_passes_its_formats_to_the_served_export(tiny_run, tmp_path):
    """Rerunning a finished search retrains nothing and exports again, here with --formats=saved_model,tflite."""
    workdir = str(tmp_path / "run")
    shutil.copytree(tiny_run[0], workdir)
    pipeline.run(tiny_config(workdir, *TINY_RUN_EXTRA, "--formats=saved_model,tflite"))
    table = storage.read_json(os.path.join(workdir, "export", "deployment.json"))
    assert [row["format"] for row in table["rows"]] == ["saved_model", "tflite"]
    assert os.path.exists(os.path.join(workdir, "export", "model.tflite"))
    assert not os.path.exists(os.path.join(workdir, "export", "model_int8.tflite"))


def test_formats_are_judged_before_anything_is_read():
    with pytest.raises(UserError, match="--formats=onnx: give one or more of saved_model, tflite, tflite_int8"):
        litert.check_formats(("onnx",))
    with pytest.raises(UserError, match="each once"):
        litert.check_formats(("tflite", "tflite"))


def test_the_export_command_refuses_an_unknown_format_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "kdas_tf.export", f"--workdir={tmp_path}", "--formats=tflite,onnx"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        "error: --formats=tflite,onnx: give one or more of saved_model, tflite, tflite_int8, each once")
    assert os.listdir(tmp_path) == []
