"""The custom loop: strategies agree, resume is exact, the schedule, divergence and bad checkpoints;
validation metrics, evaluation mode and weight decay checked against computations made apart from it."""

import dataclasses
import io
import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from kdas_tf import data, models
from kdas_tf.runtime import distribute, progress
from kdas_tf.distill.ensemble import stack_members
from kdas_tf.errors import UserError
from kdas_tf.distill.teacher_outputs import OnlineTeacherOutputs
from kdas_tf.distill.trainer import TrainConfig, Trainer, TrainingDivergedError, learning_rate_schedule


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def tiny_net(seed, num_classes=10):
    """No BatchNorm: per-replica batch statistics would make strategies differ by design."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


def weights(model):
    return [np.array(w) for w in model.weights]


def train_under(strategy, dataset, config):
    with strategy.scope():
        teacher = stack_members([tiny_net(100 + i) for i in range(3)])
        model = tiny_net(0)
    metrics = Trainer(model, dataset, config, strategy=strategy,
                      targets=OnlineTeacherOutputs(teacher, config.loss)).fit()
    return weights(model), metrics


def test_mirrored_strategy_over_two_cpus_matches_the_default_strategy(digits):
    config = TrainConfig(epochs=2, batch_size=64, loss="od", learning_rate=0.05, weight_decay=5e-4)
    default_weights, default_metrics = train_under(distribute.make_strategy("default"), digits, config)
    mirrored = distribute.make_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    mirrored_weights, mirrored_metrics = train_under(mirrored, digits, config)
    # Same global batch, summed per-replica losses: equal up to float32 summation order.
    for a, b in zip(default_weights, mirrored_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert default_metrics["train"]["loss"] == pytest.approx(mirrored_metrics["train"]["loss"], rel=1e-4)
    assert default_metrics["val"]["top1"] == pytest.approx(mirrored_metrics["val"]["top1"], abs=1e-6)


class Killed(Exception):
    pass


def test_resume_continues_at_the_right_epoch_with_identical_weights(digits, tmp_path):
    config = TrainConfig(epochs=3, batch_size=64, learning_rate=0.05)
    arch = models.Architecture.parse("resnet8:conv3x3/skip/avgpool3x3")

    def fresh_trainer(workdir):
        keras.utils.set_random_seed(1)
        return Trainer(models.build_student(arch, 10, (8, 8, 1)), digits, config, workdir=str(workdir))

    straight = fresh_trainer(tmp_path / "straight")
    straight.fit()

    interrupted = fresh_trainer(tmp_path / "resumed")
    save = interrupted._manager.save

    def save_then_die(**kwargs):
        path = save(**kwargs)
        if kwargs["checkpoint_number"] == 2:
            raise Killed(path)
        return path

    interrupted._manager.save = save_then_die
    with pytest.raises(Killed):
        interrupted.fit()

    resumed = fresh_trainer(tmp_path / "resumed")  # new weights: the checkpoint must restore them
    assert resumed.restore() == 2
    resumed.run_progress = progress.RunProgress({"final rows": 3})
    resumed.run_progress.start("final rows")
    metrics = resumed.fit()
    assert metrics["epoch"] == 3
    # the run's plan got back the two checkpointed epochs and counted the one trained
    assert resumed.run_progress.epochs_left == {"final rows": 0} and resumed.run_progress.epochs_done == 1
    assert int(resumed.optimizer.iterations) == int(straight.optimizer.iterations) == 3 * resumed.steps_per_epoch
    for a, b in zip(weights(straight.model), weights(resumed.model)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_an_epoch_draws_a_bar_of_its_batches_on_a_terminal_stderr(digits, monkeypatch):
    config = TrainConfig(epochs=1, batch_size=64)
    trainer = Trainer(tiny_net(0), digits, config, name="student")
    monkeypatch.setattr(sys, "stderr", Terminal())
    trainer.fit()
    drawn = sys.stderr.getvalue()
    assert "student epoch 1/1:" in drawn and f"/{trainer.steps_per_epoch} [" in drawn


def test_learning_rate_drops_tenfold_at_half_and_three_quarters():
    config = TrainConfig(epochs=8, learning_rate=0.1)
    schedule = learning_rate_schedule(config, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 39, 40, 41, 59, 60, 61, 79)]
    # The first step of epoch 5 (step 40) already runs at the dropped rate.
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001], rtol=1e-6)


def test_a_diverging_run_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    keras.utils.set_random_seed(0)
    good = TrainConfig(epochs=1, batch_size=64, learning_rate=0.01)
    model = tiny_net(0)
    Trainer(model, digits, good, workdir=str(tmp_path)).fit()
    exploding = dataclasses.replace(good, epochs=2, learning_rate=1e30, lr_decay_at=())  # another schedule, same checkpoint layout
    trainer = Trainer(model, digits, exploding, workdir=str(tmp_path), name="boom")
    with pytest.raises(TrainingDivergedError, match=r"boom: the training loss became (nan|inf) at epoch 2.*--learning_rate"):
        trainer.fit()
    assert tf.train.latest_checkpoint(os.path.join(tmp_path, "checkpoints")).endswith("ckpt-1")


def test_a_checkpoint_of_another_network_is_refused_with_advice(digits, tmp_path):
    config = TrainConfig(epochs=1, batch_size=64)
    Trainer(tiny_net(0), digits, config, workdir=str(tmp_path)).fit()
    other = models.build_network("resnet8", 10, (8, 8, 1))
    with pytest.raises(UserError, match="does not fit this model.*another --workdir"):
        Trainer(other, digits, config, workdir=str(tmp_path)).fit()


@pytest.mark.parametrize(
    "field,value,message",
    [("loss", "kl", "ce, kd, od"), ("epochs", 0, "--epochs"), ("alpha", 1.5, "--alpha"),
     ("lr_decay_at", (1.5,), "--lr_decay_at"), ("learning_rate", -1.0, "--learning_rate"),
     ("seed", -1, "--seed"), ("momentum", 1.0, "--momentum"), ("lr_decay_factor", 0.0, "--lr_decay_factor")],
)
def test_bad_config_values_name_the_flag(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_distilling_without_teachers_is_refused(digits):
    with pytest.raises(ValueError, match="loss kd distils from teachers, but no targets source"):
        Trainer(tiny_net(0), digits, TrainConfig(loss="kd"))


def test_a_batch_larger_than_the_training_split_is_refused(digits):
    with pytest.raises(ValueError, match="--batch_size=4096 is larger than the 1347 training examples"):
        Trainer(tiny_net(0), digits, TrainConfig(batch_size=4096))


def test_a_finished_training_leaves_no_traced_step_behind_after_release(digits):
    """Without release_traced_steps TensorFlow's gradient registry keeps every traced step (~10 MB each)."""
    import gc
    import weakref

    from tensorflow.python.framework import func_graph

    from kdas_tf._internals import release_traced_steps

    def traced_graphs():
        return {id(g): g for g in gc.get_objects() if isinstance(g, func_graph.FuncGraph)}

    gc.collect()
    before = traced_graphs()
    config = TrainConfig(epochs=1, batch_size=256, learning_rate=0.05)
    trainer = Trainer(tiny_net(0), digits, config)
    trainer.train_epoch(0, steps=1)
    graphs = [weakref.ref(g) for key, g in traced_graphs().items() if key not in before]
    del before
    assert graphs
    del trainer
    gc.collect()
    assert any(g() is not None for g in graphs)  # held by the registry, not by the trainer
    release_traced_steps()
    gc.collect()
    assert all(g() is None for g in graphs)


@pytest.fixture
def policy():
    """Sets a global mixed-precision policy for one test and restores float32 after it."""
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


def one_step_weights(digits, config, initial, precision, policy, build=tiny_net):
    policy(precision)
    model = build(0)
    model.set_weights(initial)
    trainer = Trainer(model, digits, config)
    if precision == "mixed_float16":
        # At Keras's initial scale of 2**15 this net's float16 gradients overflow and the step is
        # skipped; at 256 they are finite, so the step must happen and unscale exactly.
        trainer.optimizer.dynamic_scale.assign(256.0)
    trainer.train_epoch(0, steps=1)
    if precision == "mixed_float16":
        assert float(trainer.optimizer.dynamic_scale) == 256.0  # the step was taken, not skipped
    return weights(model)


def test_mixed_float16_takes_the_float32_step_with_loss_scaling_and_weight_decay(digits, policy):
    config = TrainConfig(epochs=1, batch_size=64, learning_rate=0.1, weight_decay=0.5, lr_decay_at=())
    initial = tiny_net(0).get_weights()
    reference = one_step_weights(digits, config, initial, "float32", policy)
    mixed = one_step_weights(digits, config, initial, "mixed_float16", policy)
    undecayed = one_step_weights(digits, dataclasses.replace(config, weight_decay=0.0), initial, "float32", policy)
    # float16 activations and gradients: agreement to 2e-3, while the decay alone moves weights by ~1e-2.
    for got, want, without in zip(mixed, reference, undecayed):
        np.testing.assert_allclose(got, want, atol=2e-3)
    assert max(np.abs(w - u).max() for w, u in zip(reference, undecayed)) > 1e-2


def resnet8(seed):
    keras.utils.set_random_seed(seed)
    return models.build_network("resnet8", 10, (8, 8, 1))


def test_mixed_bfloat16_takes_the_float32_step_on_a_resnet_with_float32_weights_and_logits(digits, policy):
    config = TrainConfig(epochs=1, batch_size=64, learning_rate=0.1, lr_decay_at=())
    initial = resnet8(0).get_weights()
    reference = one_step_weights(digits, config, initial, "float32", policy, build=resnet8)
    mixed = one_step_weights(digits, config, initial, "mixed_bfloat16", policy, build=resnet8)
    # The step of every weight, trainable and BatchNorm statistics.
    step = np.concatenate([(w - w0).ravel() for w, w0 in zip(reference, initial)])
    mixed_step = np.concatenate([(w - w0).ravel() for w, w0 in zip(mixed, initial)])
    # bfloat16's 8-bit mantissa: the steps differ by ~4% of the step (measured 3.6%); a wrong step by ~100%.
    assert np.linalg.norm(mixed_step - step) < 0.1 * np.linalg.norm(step)
    model = resnet8(0)  # built under the bfloat16 policy one_step_weights left set
    assert all(w.dtype == "float32" for w in model.weights)
    assert model(np.zeros((2, 8, 8, 1), np.float32)).dtype == "float32"


@pytest.mark.parametrize("task_type,task_id,cluster,writes", [
    (None, None, {}, True),
    ("chief", 0, {"chief": ["c:1"], "worker": ["w:1"]}, True),
    ("worker", 0, {"chief": ["c:1"], "worker": ["w:1"]}, False),
    ("worker", 0, {"worker": ["w:1", "w:2"]}, True),
    ("worker", 1, {"worker": ["w:1", "w:2"]}, False),
])
def test_only_the_chief_task_of_a_multi_worker_run_writes_files(task_type, task_id, cluster, writes, monkeypatch):
    assert distribute.is_chief_task(task_type, task_id, tuple(cluster)) is writes
    # writes_files reads the role from a real MultiWorkerMirroredStrategy's TF_CONFIG resolver. Built
    # without TF_CONFIG it stays one local worker; the resolver reads TF_CONFIG again at each question.
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    if task_type is not None:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task_type, "index": task_id}}))
    assert strategy.cluster_resolver.task_type == task_type
    assert distribute.writes_files(strategy) is writes
    assert distribute.writes_files(tf.distribute.get_strategy())  # any other strategy: its one process writes


def tiny_bn_net(seed, num_classes=10):
    """Conv with bias, BatchNorm, Dense with bias: every kind of weight the loop treats apart."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, use_bias=True)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


def numpy_metrics(model, split, info):
    """Top-1 and mean CE of `model` in inference mode over an in-memory split, metrics in float64 NumPy."""
    images = (split.images.astype(np.float32) - np.float32(info.mean)) / np.float32(info.std)
    logits = np.asarray(model(images, training=False), np.float64)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    labels = split.labels
    return {"top1": float(np.mean(logits.argmax(-1) == labels)),
            "loss": float(-log_probs[np.arange(len(labels)), labels].mean())}


def bn_moving_statistics(model):
    return [np.array(w) for w in model.non_trainable_weights]


def test_fit_reports_the_validation_split_metrics_in_inference_mode(digits):
    model = tiny_bn_net(0)
    metrics = Trainer(model, digits, TrainConfig(epochs=1, batch_size=64, learning_rate=0.1)).fit()
    expected = numpy_metrics(model, digits.splits["val"], digits.info)
    on_test = numpy_metrics(model, digits.splits["test"], digits.info)
    # The model has learnt (top-1 ~0.66) and the splits tell apart: each check below can fail.
    assert expected["top1"] > 0.5 and on_test["top1"] != pytest.approx(expected["top1"], abs=1e-5)
    assert on_test["loss"] != pytest.approx(expected["loss"], rel=1e-3)
    assert metrics["val"]["top1"] == pytest.approx(expected["top1"], abs=1e-5)
    assert metrics["val"]["loss"] == pytest.approx(expected["loss"], rel=1e-4)


def test_evaluate_leaves_batchnorm_statistics_alone_and_equals_the_inference_forward(digits):
    model = tiny_bn_net(0)
    trainer = Trainer(model, digits, TrainConfig(epochs=1, batch_size=64, learning_rate=0.05))
    trainer.train_epoch(0, steps=3)  # moving statistics now differ from any batch's statistics
    before = bn_moving_statistics(model)
    assert len(before) == 2 and np.abs(before[0]).max() > 1e-3
    metrics = trainer.evaluate(digits.val(64))
    for got, want in zip(bn_moving_statistics(model), before):
        np.testing.assert_array_equal(got, want)
    expected = numpy_metrics(model, digits.splits["val"], digits.info)
    assert metrics["top1"] == pytest.approx(expected["top1"], abs=1e-5)
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-4)


def test_one_sgd_step_decays_kernels_only_at_the_configured_strength(digits):
    """new w = w - lr * (dL/dw + wd * w) for kernels, w - lr * dL/dw for BatchNorm's gamma, beta and biases."""
    lr, wd = 0.1, 0.5  # a large decay: on BatchNorm's gamma (1.0) it would move the weight by 0.05
    config = TrainConfig(epochs=1, batch_size=64, learning_rate=lr, momentum=0.0, nesterov=False,
                         weight_decay=wd, lr_decay_at=())
    model = tiny_bn_net(0)
    twin = tiny_bn_net(0)  # the same weights; its gradient is taken independently of the trainer
    batch = next(iter(digits.train(config.batch_size, epoch=0, seed=config.seed)))
    with tf.GradientTape() as tape:
        logits = twin(batch["image"], training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch["label"], logits))
    grads = tape.gradient(loss, twin.trainable_weights)
    names = [w.name for w in twin.trainable_weights]
    assert sorted(names) == ["beta", "bias", "bias", "gamma", "kernel", "kernel"]  # conv, BatchNorm, dense
    expected = [np.array(w) - lr * (np.array(g) + (wd * np.array(w) if w.name == "kernel" else 0.0))
                for w, g in zip(twin.trainable_weights, grads)]

    Trainer(model, digits, config).train_epoch(0, steps=1)
    for w, want in zip(model.trainable_weights, expected):
        np.testing.assert_allclose(np.array(w), want, rtol=0, atol=1e-6, err_msg=w.path)


SYNC_BN_SCRIPT = """
import json, sys
import keras, numpy as np
from kdas_tf import assembly, config as config_lib, data, models
from kdas_tf.runtime import distribute
from kdas_tf.distill.trainer import TrainConfig, Trainer
distribute.split_cpu(2)
digits = data.load("digits")
config = TrainConfig(epochs=1, batch_size=64, learning_rate=0.05, weight_decay=5e-4)
mirrored = distribute.make_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
trained, synchronized = {}, {}
for name, strategy, flags in (("default", distribute.make_strategy("default"), []),
                              ("mirrored", mirrored, []),
                              ("mirrored_nosync", mirrored, ["--nosync_batchnorm"])):
    run = config_lib.from_args(["--workdir=unused", "--dataset=digits", *flags])
    keras.utils.set_random_seed(0)
    with assembly.building(run), strategy.scope():
        model = models.build_network("resnet8", 10, (8, 8, 1))
    synchronized[name] = sorted({layer.synchronized for layer in model.layers
                                 if isinstance(layer, keras.layers.BatchNormalization)})
    Trainer(model, digits, config, strategy=strategy).fit()
    trained[name] = [np.asarray(w) for w in model.weights]
difference = {name: max(float(np.max(np.abs(a - b))) for a, b in zip(trained["default"], trained[name]))
              for name in ("mirrored", "mirrored_nosync")}
print(json.dumps({"synchronized": synchronized, "max_difference": difference}))
"""


def test_batchnorm_is_synchronised_across_replicas_so_mirrored_trains_like_one_device(tmp_path):
    """A BatchNorm network (resnet8) built as a run with the default --sync_batchnorm builds it: two replicas
    train it like one device, within float32 rounding. With --nosync_batchnorm each replica normalises over
    32 images instead of 64 and trains another network (0.50 apart, measured). Its own process:
    TensorFlow's in-process collectives clash across strategies."""
    import json
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", SYNC_BN_SCRIPT], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["synchronized"] == {"default": [False], "mirrored": [True], "mirrored_nosync": [False]}
    assert result["max_difference"]["mirrored"] < 1e-3
    assert result["max_difference"]["mirrored_nosync"] > 0.05
