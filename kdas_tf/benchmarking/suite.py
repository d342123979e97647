"""Where the time of a KDAS run goes, measured against references in the same run (python -m kdas_tf.bench).

Each row divides a measurement by a reference timed beside it, so the ratios hold on a loaded machine even
when the absolute numbers do not: the custom CE step against keras.Model.fit, distillation with online
teachers against CE and against its bound 1 / (1 + N * forward / step), distillation from the
teacher-output cache against CE, the cache's build against the ensemble's forward, mixed precision against
float32, the input pipeline against the step, and a search's wall time per candidate against the CE
training of the same candidate, with resident memory after every trial. Each measurement is warmed up and
its chunk calibrated to last --chunk_seconds; then, turn after turn, each group of measurements is timed
back to back in alternating order (benchmarking.turns) and every row gets one ratio per turn; a row
reports the median ratio, its 95% interval and its verdict (reporting.stats, benchmarking.table). Data
are random images of the asked shape: speed does not depend on the pixels. The output is one table and,
with --json, every number and every turn.
"""

import dataclasses
import itertools
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kdas_tf.benchmarking import search_cost, table, turns
from kdas_tf.reporting import stats
from kdas_tf import data, models
from kdas_tf.distill import ensemble, teacher_outputs
from kdas_tf.runtime import storage
from kdas_tf.distill.trainer import TrainConfig, Trainer
from kdas_tf.runtime.workdir import Workdir


def random_dataset(num_train, image_size, channels, num_classes, seed=0):
    """A Dataset of random uint8 images with exactly num_train training examples."""
    rng = np.random.default_rng(seed)
    total = num_train + max(2, num_train // 50)
    images = rng.integers(0, 256, size=(total, image_size, image_size, channels), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=total).astype(np.int32)
    return data.from_arrays("random", num_classes, images, labels, images[:64], labels[:64],
                            val_fraction=(total - num_train) / total)


def mixed_policy(choice):
    """The mixed-precision policy to compare with float32 on this machine, or None."""
    if choice != "auto":
        return None if choice == "none" else choice
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    try:
        with open("/proc/cpuinfo") as f:
            cpu_flags = f.read()
    except OSError:
        return None
    return "mixed_bfloat16" if ("avx512_bf16" in cpu_flags or "amx_bf16" in cpu_flags) else None


class Bench:
    """Builds the step rows' runners (turns.Runner) on one dataset; each measures images per second.

    network: a network's name, or an Architecture (a candidate with add-ons). Every runner has traced and
    run `warmup_steps` steps when it is returned; turns.calibrate warms it up further.
    """

    def __init__(self, dataset, *, network, batch_size, scratch, warmup_steps=1, shortcut="zero_pad"):
        self.dataset = dataset
        self.network = network
        self.shortcut = shortcut
        self.batch_size = batch_size
        self.warmup_steps = warmup_steps
        self.scratch = scratch
        self.epoch_steps = dataset.info.num_train // batch_size

    def build(self, seed=0, policy="float32"):
        keras.mixed_precision.set_global_policy(policy)
        try:
            keras.utils.set_random_seed(seed)
            info = self.dataset.info
            return models.build_student(self.network, info.num_classes, info.image_shape, shortcut=self.shortcut)
        finally:
            keras.mixed_precision.set_global_policy("float32")

    def trainer_step(self, loss="ce", targets=None, policy="float32"):
        """The Trainer's compiled step over the first batches of the (seed 0, epoch 1) stream, warmed up on epoch 0."""
        config = TrainConfig(epochs=2, batch_size=self.batch_size, loss=loss)
        trainer = Trainer(self.build(policy=policy), self.dataset, config, targets=targets)
        trainer.train_epoch(0, steps=self.warmup_steps)
        return turns.Runner(lambda steps: trainer.train_epoch(1, steps=steps), self.batch_size, self.epoch_steps,
                            traces=trainer.tracing_count)

    def keras_fit(self):
        """keras.Model.fit on the same model, optimizer, loss and input stream."""
        model = self.build()
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )

        def stream(epoch):
            return self.dataset.train(self.batch_size, epoch=epoch, seed=0).map(lambda b: (b["image"], b["label"]))

        model.fit(stream(0).take(self.warmup_steps), verbose=0)
        return turns.Runner(lambda steps: model.fit(stream(1).take(steps), verbose=0), self.batch_size,
                            self.epoch_steps)

    def forward(self, policy="float32"):
        """Inference of one network (one teacher member) on a batch already in memory."""
        model = self.build(seed=1, policy=policy)
        infer = tf.function(lambda images: model(images, training=False))
        images = next(iter(self.dataset.train(self.batch_size, epoch=0, seed=0)))["image"]
        for _ in range(self.warmup_steps):
            infer(images)

        def run(steps):
            for _ in range(steps):
                out = infer(images)
            float(tf.reduce_sum(tf.cast(out, tf.float32)))

        return turns.Runner(run, self.batch_size, traces=infer.experimental_get_tracing_count)

    def input_pipeline(self):
        """The augmented training stream alone, consumed as fast as it comes (an epoch repeated as needed)."""

        def run(steps):
            for _ in self.dataset.train(self.batch_size, epoch=1, seed=0).repeat().take(steps):
                pass

        run(self.warmup_steps)
        return turns.Runner(run, self.batch_size)

    def cache_build(self, teacher, paths):
        """Building the teacher-output cache of one more epoch per step (forward, float16, checksum, write)."""
        cache = teacher_outputs.CachedTeacherOutputs(teacher, "od", self.dataset, member_paths=paths,
                                                     cache_dir=os.path.join(self.scratch, "cache_build"))
        epochs = itertools.count()

        def run(steps):
            for _ in range(steps):
                cache.epoch_targets(next(epochs), 0)

        return turns.Runner(run, self.dataset.info.num_train)

    def make_teachers(self, num_teachers):
        """N members with random weights (speed does not depend on them), saved, and their ensemble."""
        paths = Workdir(self.scratch).member_models(num_teachers)
        members = []
        for index, path in enumerate(paths):
            member = self.build(seed=100 + index)
            member.name = f"member_{index}"
            storage.save_model(member, path)
            members.append(member)
        return ensemble.stack_members(members), paths


def step_runners(bench, num_teachers, policy):
    """{name: turns.Runner} of every step measurement; the cached step reads epoch 1, built beforehand."""
    teacher, paths = bench.make_teachers(num_teachers)
    cache = teacher_outputs.CachedTeacherOutputs(
        teacher, "od", bench.dataset, member_paths=paths, cache_dir=os.path.join(bench.scratch, "cache")
    )
    for epoch in (0, 1):  # the warm-up epoch and the timed one, built as a search builds them: once
        cache.epoch_targets(epoch, 0)
    runners = {
        "keras_fit_ce": bench.keras_fit(),
        "custom_step_ce": bench.trainer_step("ce"),
        "teacher_forward": bench.forward(),
        "online_kd": bench.trainer_step("kd", teacher_outputs.OnlineTeacherOutputs(teacher, "kd")),
        "online_od": bench.trainer_step("od", teacher_outputs.OnlineTeacherOutputs(teacher, "od")),
        "cached_od": bench.trainer_step("od", cache),
        "cache_build": bench.cache_build(teacher, paths),
        "input_pipeline": bench.input_pipeline(),
    }
    if policy:
        runners[f"custom_step_ce_{policy}"] = bench.trainer_step("ce", policy=policy)
        runners[f"teacher_forward_{policy}"] = bench.forward(policy=policy)
    return runners


def step_plan(num_teachers, policy):
    """(groups, rows, derived) of the step rows: the runners each turn times back to back, what is compared."""
    groups = {
        "fit": ["custom_step_ce", "keras_fit_ce"],
        # online_od and the bound's two terms side by side, in both orders
        "online": ["online_kd", "online_od", "custom_step_ce", "teacher_forward"],
        "cached": ["cached_od", "custom_step_ce"],
        "cache_build": ["cache_build", "teacher_forward"],
        "input": ["input_pipeline", "custom_step_ce"],
    }
    rows = [
        table.Row("custom_step_ce", "keras_fit_ce", "fit", ">=", 1.0),
        table.Row("online_kd", "custom_step_ce", "online"),
        table.Row("online_od", "custom_step_ce", "online"),
        table.Row("online_kd", "online_bound", "online"),
        table.Row("online_od", "online_bound", "online", ">=", 0.9),
        table.Row("cached_od", "custom_step_ce", "cached", ">=", 0.9),
        table.Row("cache_build", "ensemble_forward", "cache_build"),
        table.Row("input_pipeline", "custom_step_ce", "input", ">=", 5.0),
    ]
    if policy:
        groups["mixed_step"] = [f"custom_step_ce_{policy}", "custom_step_ce"]
        groups["mixed_forward"] = [f"teacher_forward_{policy}", "teacher_forward"]
        rows += [table.Row(f"custom_step_ce_{policy}", "custom_step_ce", "mixed_step"),
                 table.Row(f"teacher_forward_{policy}", "teacher_forward", "mixed_forward")]
    derived = {"online_bound": table.online_bound(num_teachers),
               "ensemble_forward": table.ensemble_forward(num_teachers)}
    return groups, rows, derived


def search_rows(config, scratch):
    """The search rows: an OD search distilling from the cache, each candidate paired with its CE training."""
    if config.search_dataset == "digits":
        dataset = data.load("digits")
    else:
        dataset = random_dataset(1536, 8, 1, 10)
    bench = Bench(dataset, network=config.search_backbone, batch_size=config.search_batch_size, scratch=scratch,
                  shortcut=config.shortcut)
    teacher, paths = bench.make_teachers(config.num_teachers)
    cache = teacher_outputs.CachedTeacherOutputs(
        teacher, "od", dataset, member_paths=paths, cache_dir=os.path.join(scratch, "cache")
    )
    return search_cost.measure(
        dataset, cache, backbone=config.search_backbone, trials=config.search_trials, epochs=config.search_epochs,
        batch_size=config.search_batch_size, scratch=scratch, shortcut=config.shortcut,
    )


def machine():
    return {
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def measure_steps(config, scratch, policy):
    """The step rows timed: turns.paired_turns's result with the plan's "groups", "rows" and "derived"."""
    dataset = random_dataset(config.epoch_steps * config.batch_size, config.image_size, config.channels,
                             config.num_classes)
    bench = Bench(dataset, network=config.network, batch_size=config.batch_size, scratch=scratch,
                  shortcut=config.shortcut)
    runners = step_runners(bench, config.num_teachers, policy)
    groups, rows, derived = step_plan(config.num_teachers, policy)
    timed = turns.paired_turns(groups, runners, turns=config.turns, chunk_seconds=config.chunk_seconds,
                               max_warmups=config.max_warmups)
    return {**timed, "groups": groups, "rows": rows, "derived": derived}


def run(config):
    """Every row of `config` (a bench_config.BenchConfig): prints the table, writes --json, returns the report."""
    scratch = config.workdir or tempfile.mkdtemp(prefix="kdas_bench-")
    os.makedirs(scratch, exist_ok=True)
    load_before = machine()["load_average"]
    start = time.perf_counter()
    policy = mixed_policy(config.mixed_policy)
    try:
        steps = measure_steps(config, os.path.join(scratch, "steps"), policy)
        search = search_rows(config, os.path.join(scratch, "search"))
    finally:
        if not config.workdir:
            shutil.rmtree(scratch, ignore_errors=True)
    all_turns = {**steps["turns"], **search["turns"]}
    rows_table = table.compare(all_turns, steps["rows"] + search["rows"], steps["derived"], search["units"])
    report = {
        "settings": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("json", "workdir")},
        "mixed_policy": policy,
        "machine": {**machine(), "load_average_at_start": load_before},
        "seconds": time.perf_counter() - start,
        "method": {"confidence": stats.CONFIDENCE, "groups": steps["groups"]},
        "rows": rows_table,
        "calibration": steps["calibration"],
        "turns": all_turns,
        "search": search["details"],
    }
    print(table.format_table(rows_table))
    if config.json:
        storage.write_json(config.json, report)
        logging.info("wrote %s", config.json)
    return report
