"""Given teachers (--teacher_models, or keras.Models from Python) as the ensemble: .keras files and SavedModels,
fed the scale they were trained on, probabilities used through their log, one teacher alone, their identity a
setting and the teacher-output cache's key, and teachers that do not fit the data refused naming the file."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdas_tf import assembly, config, data, dry_run, pipeline
from kdas_tf.runtime import distribute, storage
from kdas_tf.distill import given_teachers, losses, teacher_outputs
from kdas_tf.errors import UserError, one_line
from kdas_tf.runtime.workdir import Workdir
from conftest import ROOT

SHAPE, CLASSES = (8, 8, 3), 3


def tiny_model(seed, *, classes=CLASSES, shape=SHAPE, softmax=False, biased=False):
    """A small user model: conv, pooling, dense; logits unless softmax. Its biases are zero (untrained: its logits
    scale with its input) unless biased (then feeding it another scale changes more than their size)."""
    keras.utils.set_random_seed(seed)
    bias = keras.initializers.RandomNormal(stddev=1.0) if biased else "zeros"
    return keras.Sequential([
        keras.Input(shape), keras.layers.Conv2D(4, 3, activation="relu", bias_initializer=bias),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(classes, activation="softmax" if softmax else None, bias_initializer=bias)],
        name=f"user_model_{seed}")


@pytest.fixture(scope="module")
def npz_path(tmp_path_factory):
    """300 train (30 of them validation: 10 per class) and 60 test images of 8x8x3: class k is mostly colour
    channel k, so small models can learn it."""
    path = str(tmp_path_factory.mktemp("npz") / "d.npz")
    write_colours_npz(path)
    return path


def write_colours_npz(path, num_train=300, num_test=60):
    rng = np.random.default_rng(0)
    labels = np.arange(num_train + num_test) % CLASSES
    images = rng.integers(0, 120, (len(labels), *SHAPE))
    images[np.arange(len(labels)), :, :, labels] += 120
    np.savez(path, x_train=images[:num_train].astype(np.uint8), y_train=labels[:num_train],
             x_test=images[num_train:].astype(np.uint8), y_test=labels[num_train:])


def channel_reader(classes=CLASSES, shape=SHAPE):
    """A model that follows the Keras convention (its own Rescaling layer: it takes pixels) and reads the colours
    data right: the class is the brightest channel, the bias a guess (class 0) where the input is near 0."""
    model = keras.Sequential([keras.Input(shape), keras.layers.Rescaling(1 / 255),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(classes)], name="channel_reader")
    model.layers[-1].set_weights([10 * np.eye(shape[-1], classes, dtype=np.float32),
                                  np.eye(1, classes, dtype=np.float32)[0]])
    return model


@pytest.fixture(scope="module")
def dataset(npz_path):
    return data.load(f"npz:{npz_path}")


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    """A .keras teacher and a SavedModel teacher, both taking pixels / 255."""
    root = tmp_path_factory.mktemp("teachers")
    model_a, model_b = tiny_model(1), tiny_model(2)
    model_a.save(str(root / "a.keras"))
    model_b.export(str(root / "b_savedmodel"), verbose=False)
    return {"a": str(root / "a.keras"), "b": str(root / "b_savedmodel"), "models": (model_a, model_b)}


def unit_batches(dataset, split):
    """A split's images as pixels / 255 and its labels, in index order."""
    images = dataset.splits[split].images.astype(np.float32) / 255.0
    return images, dataset.splits[split].labels


def test_keras_and_savedmodel_teachers_are_reported_like_trained_members(dataset, teacher_files, tmp_path):
    strategy = distribute.make_strategy("default")
    given = given_teachers.load_given(dataset, [teacher_files["a"], teacher_files["b"]], input_scale="unit",
                                batch_size=16, strategy=strategy)
    report = given_teachers.report_given(*given, dataset, input_scale="unit", batch_size=16,
                                   workdir=Workdir(str(tmp_path)))
    test_images, test_labels = unit_batches(dataset, "test")
    logits = np.stack([m.predict(test_images, verbose=0) for m in teacher_files["models"]])
    right = logits.argmax(-1) == test_labels
    np.testing.assert_allclose(report["member_test_top1"], right.mean(1), atol=1e-9)
    assert report["ensemble_test_top1"] == pytest.approx((logits.mean(0).argmax(-1) == test_labels).mean())
    assert report["oracle_test_top1"] == pytest.approx(right.any(0).mean())
    train_images, train_labels = unit_batches(dataset, "train")
    train_right = np.stack([m.predict(train_images, verbose=0).argmax(-1) == train_labels
                            for m in teacher_files["models"]]).sum(0)
    np.testing.assert_allclose(report["train_members_correct_histogram"], np.bincount(train_right, minlength=3) / dataset.info.num_train)
    assert [m["path"] for m in report["members"]] == [os.path.abspath(teacher_files[k]) for k in "ab"]
    assert [m["outputs"] for m in report["members"]] == ["logits", "logits"]
    assert report["members"][0]["parameters"] == teacher_files["models"][0].count_params()
    assert storage.read_json(str(tmp_path / "teachers" / "results.json")) == report


def test_each_teacher_input_scale_feeds_the_members_their_images_at_that_scale(dataset):
    """At each --teacher_input the ensemble's logits [N, B, C] are the members' own forward of the uint8 images
    brought to that scale in NumPy (standardised with the dataset's mean and std, pixels, pixels / 255)."""
    members = [tiny_model(seed, biased=True) for seed in (11, 12)]
    pixels = dataset.splits["train"].images.astype(np.float32)
    mean, std = np.float32(dataset.info.mean), np.float32(dataset.info.std)
    at_scale = {"standardised": (pixels - mean) / std, "pixels": pixels, "unit": pixels / 255.0}
    standardised = next(iter(dataset.train_eval(dataset.info.num_train)))["image"]
    expected = {}
    for scale in given_teachers.INPUT_SCALES:
        teacher, _ = given_teachers.load_given(dataset, members, input_scale=scale, batch_size=16,
                                               strategy=distribute.make_strategy("default"))
        expected[scale] = np.stack([member(at_scale[scale]).numpy() for member in members])
        # float32: the layer's x * std + mean returns the pixels to ~1e-5, logits of ~160 to ~2e-5.
        np.testing.assert_allclose(teacher(standardised).numpy(), expected[scale], rtol=1e-5, atol=1e-4)
    # Biased members: another scale changes their logits by more than a factor (as zero-bias ones would not).
    assert not np.allclose(expected["pixels"], 255 * expected["unit"], rtol=0.1)


def test_a_probability_teacher_distils_through_the_log_of_its_probabilities(dataset, tmp_path, caplog):
    model = tiny_model(3, softmax=True)
    teacher, members = given_teachers.load_given(dataset, [model], input_scale="standardised", batch_size=16,
                                           strategy=distribute.make_strategy("default"))
    assert members[0]["outputs"] == "probabilities" and "outputs probabilities" in caplog.text
    batch = next(iter(dataset.train_eval(16)))
    probabilities = model(batch["image"]).numpy()
    logits = teacher(batch["image"]).numpy()  # [1, B, C]
    np.testing.assert_allclose(logits[0], np.log(np.maximum(probabilities, 1e-7)), rtol=1e-5, atol=1e-6)
    # Its KD target at T = 1 is the model's own distribution.
    np.testing.assert_allclose(tf.nn.softmax(logits[0]).numpy(), probabilities, atol=1e-6)
    plain, plain_members = given_teachers.load_given(dataset, [tiny_model(3)], input_scale="standardised", batch_size=16,
                                               strategy=distribute.make_strategy("default"))
    assert plain_members[0]["outputs"] == "logits"


def test_a_single_teacher_gives_the_oracle_target_where_it_is_right(dataset, teacher_files, tmp_path):
    teacher, _ = given_teachers.load_given(dataset, [teacher_files["a"]], input_scale="unit", batch_size=16,
                                           strategy=distribute.make_strategy("default"))
    report = given_teachers.report_given(teacher, _, dataset, input_scale="unit", batch_size=16,
                                   workdir=Workdir(str(tmp_path)))
    assert report["num_teachers"] == 1 and len(report["train_members_correct_histogram"]) == 2
    batch = next(iter(dataset.train_eval(dataset.info.num_train)))
    member_logits = teacher(batch["image"])
    target, has_target = losses.distillation_targets("od", batch["label"], member_logits)
    right = member_logits[0].numpy().argmax(-1) == batch["label"].numpy()
    np.testing.assert_array_equal(has_target.numpy(), right)
    np.testing.assert_allclose(target.numpy()[right], member_logits[0].numpy()[right], atol=1e-6)


def test_teachers_that_do_not_fit_the_data_are_refused_naming_the_file(dataset, tmp_path):
    strategy = distribute.make_strategy("default")
    cases = {"five.keras": (tiny_model(4, classes=5), r"five.keras outputs \(5,\) per image; the data has 3 classes"),
             "big.keras": (tiny_model(5, shape=(16, 16, 3)), r"big.keras does not take this data's images \(8, 8, 3\)")}
    for name, (model, message) in cases.items():
        model.save(str(tmp_path / name))
        with pytest.raises(UserError, match=message) as error:
            given_teachers.load_given(dataset, [str(tmp_path / name)], input_scale="unit", batch_size=16, strategy=strategy)
        assert "\n" not in str(error.value)
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(UserError, match=r"weights.h5: a given teacher is a .keras file or a SavedModel directory"):
        given_teachers.load_given(dataset, [str(tmp_path / "weights.h5")], input_scale="unit", batch_size=16,
                            strategy=strategy)


def test_an_unreadable_keras_teacher_is_refused_saying_why_and_never_sends_the_user_to_checkpoints(
        dataset, teacher_files, tmp_path):
    """Safe mode refusing a Lambda layer or an unregistered class, and a damaged file, each say what to do with
    the user's own file: it has no checkpoints to rebuild it from."""
    keras.Sequential([keras.Input(SHAPE), keras.layers.Lambda(lambda x: 2 * x), keras.layers.Flatten(),
                      keras.layers.Dense(CLASSES)]).save(str(tmp_path / "lambda.keras"))

    class Unregistered(keras.layers.Layer):
        def call(self, x):
            return x

    keras.Sequential([keras.Input(SHAPE), Unregistered(), keras.layers.Flatten(),
                      keras.layers.Dense(CLASSES)]).save(str(tmp_path / "custom.keras"))
    whole = open(teacher_files["a"], "rb").read()
    (tmp_path / "truncated.keras").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip")
    cases = {"lambda.keras": r"holds a Lambda layer, which safe mode refuses .*: rebuild the model without it .*"
                             r"or export it as a SavedModel",
             "custom.keras": r"uses Unregistered, a custom object Keras cannot rebuild here: decorate it with "
                             r"@keras.saving.register_keras_serializable\(\) .*or export it as a SavedModel",
             "truncated.keras": r"is damaged \(not a complete .keras archive",
             "corrupt.keras": r"is damaged \(not a complete .keras archive"}
    for name, message in cases.items():
        with pytest.raises(UserError, match=f"{name} {message}") as error:
            given_teachers.load_given(dataset, [str(tmp_path / name)], input_scale="unit", batch_size=16,
                                      strategy=distribute.make_strategy("default"))
        assert "checkpoint" not in str(error.value) and "\n" not in str(error.value)


def test_a_savedmodel_that_takes_uint8_is_refused_in_one_clean_line_that_keeps_the_cause(dataset, tmp_path):
    """TensorFlow's message inside the error: no terminal escapes, no tensors' values, one line, and the part that
    names the cause (the dtypes) kept."""
    model = tiny_model(7)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda images: model(tf.cast(images, tf.float32)),
                         input_signature=[tf.TensorSpec([None, *SHAPE], tf.uint8)])
    archive.write_out(str(tmp_path / "uint8"), verbose=False)
    with pytest.raises(UserError) as error:
        given_teachers.load_given(dataset, [str(tmp_path / "uint8")], input_scale="pixels", batch_size=16,
                                  strategy=distribute.make_strategy("default"))
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'uint8'} does not take this data's images (float32 [B, 8, 8, 3]): ")
    assert "uint8" in message and "float" in message.split(": ", 1)[1], message
    assert "\x1b" not in message and "\n" not in message and "Arguments received" not in message, message
    assert len(message) < 500 and not message.endswith("[Op:__"), message


def test_one_line_cleans_what_keras_wraps_around_a_cause():
    wrapped = ("Exception encountered when calling TFSMLayer.call().\n\n\x1b[1mcannot compute __inference_f_46 as "
               "input #0(zero-based) was expected to be a uint8 tensor but is a float tensor [Op:__inference_f_46]"
               "\x1b[0m\n\nArguments received by TFSMLayer.call():\n  • inputs=tf.Tensor(shape=(2, 8, 8, 1))")
    assert one_line(wrapped) == ("cannot compute __inference_f_46 as input #0(zero-based) was expected to be a "
                                 "uint8 tensor but is a float tensor")
    binding = ("Binding inputs to tf.function failed due to `Can not cast TensorSpec(dtype=tf.float32) to "
               "TensorSpec(dtype=tf.uint8)`. Received args: (<tf.Tensor: numpy=\narray([[0.],\n [0.]])>,) and "
               "kwargs: {} for signature: (images: TensorSpec(dtype=tf.uint8)).")
    assert one_line(binding) == ("Binding inputs to tf.function failed due to `Can not cast TensorSpec("
                                 "dtype=tf.float32) to TensorSpec(dtype=tf.uint8)`. for signature: (images: "
                                 "TensorSpec(dtype=tf.uint8)).")
    eager = ("{{function_node __wrapped__DecodeImage_device_/job:localhost/replica:0/task:0/device:CPU:0}} Invalid "
             "PNG. Failed to initialize decoder. [Op:DecodeImage] name: ")  # an eager op's error, as TensorFlow says it
    assert one_line(eager) == "Invalid PNG. Failed to initialize decoder."
    cut = one_line("word " * 100, limit=52)
    assert cut == "word " * 10 + "..." and len(cut) <= 56


def test_the_same_teacher_twice_is_refused_whether_one_file_named_twice_a_copy_or_one_model(
        dataset, teacher_files, tmp_path):
    copy = tmp_path / "copy.keras"
    copy.write_bytes(open(teacher_files["a"], "rb").read())
    strategy = distribute.make_strategy("default")
    for paths in ([teacher_files["a"], teacher_files["a"]], [teacher_files["a"], str(copy)],
                  [teacher_files["b"], teacher_files["a"], teacher_files["b"]]):
        with pytest.raises(UserError, match=rf"--teacher_models: .* and {paths[-1]} are the same model \(identical "
                                            r"content, sha256 \w{12}\): give each teacher once"):
            given_teachers.load_given(dataset, paths, input_scale="unit", batch_size=16, strategy=strategy)
    model = tiny_model(8)
    with pytest.raises(UserError, match="teachers user_model_8 and user_model_8 are the same model"):
        given_teachers.load_given(dataset, [model, model], input_scale="unit", batch_size=16, strategy=strategy)
    assert given_teachers.expand_model_paths([teacher_files["a"]] * 2) == [teacher_files["a"]] * 2  # judged by content


def test_a_teacher_with_nan_weights_is_refused_before_the_run(dataset, tmp_path):
    model = tiny_model(9)
    model.layers[-1].kernel.assign(np.full(model.layers[-1].kernel.shape, np.nan, np.float32))
    model.save(str(tmp_path / "nan.keras"))
    with pytest.raises(UserError, match=r"nan.keras outputs NaN or infinity on this data's images \(12 of its 127 "
                                        r"weights are not finite\): give a teacher that trained without diverging"):
        given_teachers.load_given(dataset, [str(tmp_path / "nan.keras")], input_scale="unit", batch_size=16,
                                  strategy=distribute.make_strategy("default"))


def test_a_teacher_fed_another_scale_than_it_takes_is_refused_naming_the_scale_that_fits(dataset, caplog):
    """A model with its own Rescaling layer (it takes pixels) scores a guess fed standardised or unit images."""
    strategy = distribute.make_strategy("default")
    teacher, _ = given_teachers.load_given(dataset, [channel_reader()], input_scale="pixels", batch_size=16,
                                           strategy=strategy)
    val = next(iter(dataset.val(dataset.info.num_val)))
    assert np.mean(teacher(val["image"]).numpy()[0].argmax(-1) == val["label"].numpy()) == 1.0  # it fits pixels
    guess = np.mean(val["label"].numpy() == 0)  # near 0, its bias picks class 0
    for wrong in ("standardised", "unit"):
        with pytest.raises(UserError, match=rf"channel_reader scores {guess:.1%} on 30 validation images fed "
                                            rf"--teacher_input={wrong} \(chance 33.3%\) but 100.0% fed pixels: pass "
                                            r"--teacher_input=pixels"):
            given_teachers.load_given(dataset, [channel_reader()], input_scale=wrong, batch_size=16, strategy=strategy)
    # A teacher that guesses at every scale is not refused (nothing fits better): it is warned about.
    guesser = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(CLASSES, use_bias=False,
                                kernel_initializer="zeros")], name="guesser")
    given_teachers.load_given(dataset, [guesser], input_scale="standardised", batch_size=16, strategy=strategy)
    assert f"teacher guesser scores {100 * guess:.1f}% on 30 validation images (chance 33.3%), and no better at " \
           "another --teacher_input" in caplog.text


def make_config(workdir, npz_path, *args):
    return config.from_args([f"--flagfile={ROOT}/flags/digits.cfg", f"--workdir={workdir}",
                             f"--dataset=npz:{npz_path}", "--teacher_input=unit", *args])


def test_teacher_identity_is_a_setting_and_keys_the_cache(npz_path, dataset, tmp_path):
    for seed, name in ((1, "a"), (2, "b")):
        tiny_model(seed).save(str(tmp_path / f"{name}.keras"))
    run = make_config(tmp_path / "w", npz_path, f"--teacher_models={tmp_path}/*.keras")
    assert assembly.teacher_model_files(run) == [f"{tmp_path}/a.keras", f"{tmp_path}/b.keras"]
    recorded = assembly.run_settings(run)["teacher_models"]
    assert [entry["sha256"] for entry in recorded] == [storage.content_sha256(f"{tmp_path}/{n}.keras") for n in "ab"]
    trained = make_config(tmp_path / "w", npz_path)
    made_before = {k: v for k, v in trained.settings().items() if k != "teacher_models"}
    Workdir(str(tmp_path / "old")).claim(made_before)  # a directory made before --teacher_models existed
    with pytest.raises(UserError, match="--teacher_models was \\[\\], now"):
        Workdir(str(tmp_path / "old")).claim(assembly.run_settings(run), run.unrecorded_settings())
    Workdir(str(tmp_path / "old")).claim(trained.settings(), trained.unrecorded_settings())
    Workdir(str(tmp_path / "w")).claim(assembly.run_settings(run))
    teacher, _ = given_teachers.load_given(dataset, assembly.teacher_model_files(run), input_scale="unit", batch_size=16,
                                           strategy=distribute.make_strategy("default"))
    key = teacher_outputs.cache_key([], dataset, teacher.member_ids)
    tiny_model(9).save(str(tmp_path / "b.keras"))  # other weights at the same path
    with pytest.raises(UserError, match="was made with other settings .*--teacher_models was"):
        Workdir(str(tmp_path / "w")).claim(assembly.run_settings(run))
    other, _ = given_teachers.load_given(dataset, assembly.teacher_model_files(run), input_scale="unit", batch_size=16,
                                           strategy=distribute.make_strategy("default"))
    assert teacher_outputs.cache_key([], dataset, other.member_ids)["teachers"] != key["teachers"]
    pixels, _ = given_teachers.load_given(dataset, assembly.teacher_model_files(run), input_scale="pixels", batch_size=16,
                                           strategy=distribute.make_strategy("default"))
    assert pixels.member_ids != other.member_ids  # the same files fed another scale give other targets
    with pytest.raises(UserError, match=r"--teacher_models: .*/none.keras names no file"):  # when a job starts
        assembly.teacher_model_files(make_config(tmp_path / "w", npz_path, f"--teacher_models={tmp_path}/none.keras"))
    model = tiny_model(1)
    before = given_teachers.weights_identity([model])
    model.layers[-1].bias.assign(np.ones(CLASSES))
    assert given_teachers.weights_identity([model]) != before


@pytest.mark.slow  # a TensorFlow import
def test_the_command_line_refuses_a_teacher_of_other_classes_with_exit_2_and_writes_nothing(npz_path, tmp_path):
    tiny_model(6, classes=10).save(str(tmp_path / "ten.keras"))
    out = subprocess.run([sys.executable, "-m", "kdas_tf.search", "--flagfile=flags/digits.cfg",
                          f"--workdir={tmp_path}/w", f"--dataset=npz:{npz_path}", f"--teacher_models={tmp_path}/ten.keras"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    line = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 2 and line.startswith("error: ") and "ten.keras outputs (10,) per image" in line, out.stderr
    assert not os.path.exists(tmp_path / "w")


@pytest.mark.slow  # a whole (tiny) pipeline
def test_a_search_distils_two_given_teachers_of_an_npz_dataset(npz_path, teacher_files, tmp_path):
    run = make_config(tmp_path / "w", npz_path, f"--teacher_models={teacher_files['a']},{teacher_files['b']}",
                      "--epochs=1", "--search_epochs=1", "--trials_per_round=2", "--batch_size=16",
                      "--final_loss=od", "--student_loss=ce")
    summary = pipeline.run(run)
    written = storage.read_json(str(tmp_path / "w" / "results.json"))
    assert written["teacher"]["num_teachers"] == 2 and written["teacher"]["network"] == "given model"
    assert [m["path"] for m in written["teacher"]["members"]] == [os.path.abspath(teacher_files[k]) for k in "ab"]
    assert summary["final"]["kdas_od"]["test"]["top1"] >= 0 and os.path.isdir(tmp_path / "w" / "export")
    manifest = storage.read_json(str(tmp_path / "w" / "teacher_outputs" / "manifest.json"))
    assert manifest["teachers"] == [f"{m['sha256']}:unit" for m in written["teacher"]["members"]]


def test_keras_models_from_python_are_checked_first_and_recorded_by_their_weights(npz_path, tmp_path):
    with np.load(npz_path) as arrays:
        images, labels = arrays["x_train"], arrays["y_train"]
    arrays = data.from_numpy((images, labels), (images[:9], labels[:9]), name="mine")
    run = config.Config(run=config.RunConfig(workdir=str(tmp_path / "w")),
                        teachers=config.TeacherConfig(input_scale="unit"), recipe=config.RecipeConfig(batch_size=32),
                        search=config.SearchConfig(backbone="resnet8", trials_per_round=1, search_epochs=1))
    with pytest.raises(UserError, match=r"user_model_4 outputs \(5,\) per image; the data has 3 classes"):
        pipeline.run(run, dataset=arrays, teachers=[tiny_model(4, classes=5)])
    assert not os.path.exists(tmp_path / "w")
    model = tiny_model(1)
    _, _, _, (teacher, members) = pipeline._start(run, arrays, job="search", teachers=[model])
    recorded = storage.read_json(str(tmp_path / "w" / "settings.json"))
    assert recorded["teacher_models"] == given_teachers.weights_identity([model]) and recorded["dataset"] == "mine"
    assert members[0]["model"] == "user_model_1" and teacher.member_ids[0].endswith(":unit")
    model.layers[-1].bias.assign(np.ones(CLASSES))
    with pytest.raises(UserError, match="--teacher_models was"):
        pipeline._start(run, arrays, job="search", teachers=[model])


def test_the_dry_run_names_the_given_teachers(npz_path, teacher_files, tmp_path):
    run = make_config(tmp_path / "w", npz_path, f"--teacher_models={teacher_files['a']},{teacher_files['b']}")
    plan = dry_run.describe_plan(run)
    assert f"teachers: 2 given models ({teacher_files['a']}, {teacher_files['b']}), fed unit images" in plan
    assert not os.path.exists(tmp_path / "w")
