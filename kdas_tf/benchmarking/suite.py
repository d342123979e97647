"""Where the time of a KDAS run goes, measured against references in the same run (python -m kdas_tf.bench).

Each row compares one measurement with a reference taken in the same process
moments before, so the ratios hold on a loaded machine even when the absolute
numbers do not: the custom CE step against keras.Model.fit, distillation with
online teachers against CE and against its bound 1 / (1 + N * forward / step),
distillation from the teacher-output cache against CE, mixed precision against
float32, the input pipeline against the step, and a search's wall time per
candidate against the CE training of the same candidates, with resident memory
after every trial. Data are random images of the asked shape: speed does not
depend on the pixels. The output is one table and, with --json, every number.
"""

import dataclasses
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kdas_tf.benchmarking import search_cost
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
    """Runs the step rows on one dataset; each measurement is images per second.

    network: a network's name, or an Architecture (a candidate with add-ons).
    """

    def __init__(self, dataset, *, network, batch_size, steps, warmup_steps, scratch, repeats=1, shortcut="zero_pad"):
        self.dataset = dataset
        self.network = network
        self.shortcut = shortcut
        self.batch_size = batch_size
        self.steps = steps
        self.warmup_steps = warmup_steps
        self.scratch = scratch
        self.repeats = repeats

    def build(self, seed=0, policy="float32"):
        keras.mixed_precision.set_global_policy(policy)
        try:
            keras.utils.set_random_seed(seed)
            info = self.dataset.info
            return models.build_student(self.network, info.num_classes, info.image_shape, shortcut=self.shortcut)
        finally:
            keras.mixed_precision.set_global_policy("float32")

    def measure(self, runners):
        """Images/s of each runner (run_steps(n), already warmed up), taking turns chunk by chunk.

        Taking turns puts a measurement and its reference under the same load;
        each reports its fastest chunk, the one least disturbed by other processes.
        """
        chunk = max(1, self.steps // self.repeats)
        best = {name: float("inf") for name in runners}
        for _ in range(self.repeats):
            for name, run_steps in runners.items():
                start = time.perf_counter()
                run_steps(chunk)
                best[name] = min(best[name], time.perf_counter() - start)
        return {name: chunk * self.batch_size / seconds for name, seconds in best.items()}

    def trainer_step(self, loss="ce", targets=None, policy="float32"):
        """The Trainer's compiled step over the (seed 0, epoch 1) stream, warmed up on epoch 0."""
        config = TrainConfig(epochs=2, batch_size=self.batch_size, loss=loss)
        trainer = Trainer(self.build(policy=policy), self.dataset, config, targets=targets)
        trainer.train_epoch(0, steps=self.warmup_steps)
        return lambda steps: trainer.train_epoch(1, steps=steps)

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
        return lambda steps: model.fit(stream(1).take(steps), verbose=0)

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

        return run

    def input_pipeline(self, epochs=3):
        """The augmented training stream alone, consumed as fast as it comes."""
        for _ in self.dataset.train(self.batch_size, epoch=0, seed=0).take(self.warmup_steps):
            pass
        start = time.perf_counter()
        count = 0
        for epoch in range(1, epochs + 1):
            for batch in self.dataset.train(self.batch_size, epoch=epoch, seed=0):
                count += int(batch["label"].shape[0])
        return count / (time.perf_counter() - start)

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


def step_rows(bench, num_teachers, policy):
    """Every step measurement (images/s) and the comparisons between them."""
    teacher, paths = bench.make_teachers(num_teachers)
    cache = teacher_outputs.CachedTeacherOutputs(
        teacher, "od", bench.dataset, member_paths=paths, cache_dir=os.path.join(bench.scratch, "cache")
    )
    cache.epoch_targets(0, 0)  # the warm-up epoch
    start = time.perf_counter()
    cache.epoch_targets(1, 0)  # the timed epoch, built before timing as a search builds it once
    build_seconds = time.perf_counter() - start
    runners = {
        "keras_fit_ce": bench.keras_fit(),
        "custom_step_ce": bench.trainer_step("ce"),
        "teacher_forward": bench.forward(),
        "online_kd": bench.trainer_step("kd", teacher_outputs.OnlineTeacherOutputs(teacher, "kd")),
        "online_od": bench.trainer_step("od", teacher_outputs.OnlineTeacherOutputs(teacher, "od")),
        "cached_od": bench.trainer_step("od", cache),
    }
    if policy:
        runners[f"custom_step_ce_{policy}"] = bench.trainer_step("ce", policy=policy)
        runners[f"teacher_forward_{policy}"] = bench.forward(policy=policy)
    m = bench.measure(runners)
    # One student step plus N member forwards, each at the speed measured alone.
    m["online_bound"] = 1.0 / (1.0 / m["custom_step_ce"] + num_teachers / m["teacher_forward"])
    m["ensemble_forward"] = m["teacher_forward"] / num_teachers
    m["cache_build"] = bench.dataset.info.num_train / build_seconds
    m["input_pipeline"] = bench.input_pipeline()
    rows = [
        ("custom_step_ce", "keras_fit_ce", ">=", 1.0),
        ("online_kd", "custom_step_ce", None, None),
        ("online_od", "custom_step_ce", None, None),
        ("online_kd", "online_bound", None, None),
        ("online_od", "online_bound", ">=", 0.9),
        ("cached_od", "custom_step_ce", ">=", 0.9),
        ("cache_build", "ensemble_forward", None, None),
        ("input_pipeline", "custom_step_ce", ">=", 5.0),
    ]
    if policy:
        rows += [(f"custom_step_ce_{policy}", "custom_step_ce", None, None),
                 (f"teacher_forward_{policy}", "teacher_forward", None, None)]
    return m, rows


def search_rows(config, scratch):
    """The search rows: an OD search distilling from the cache, against CE training of its candidates."""
    if config.search_dataset == "digits":
        dataset = data.load("digits")
    else:
        dataset = random_dataset(1536, 8, 1, 10)
    bench = Bench(dataset, network=config.search_backbone, batch_size=config.search_batch_size, steps=1,
                  warmup_steps=1, scratch=scratch, shortcut=config.shortcut)
    teacher, paths = bench.make_teachers(config.num_teachers)
    cache = teacher_outputs.CachedTeacherOutputs(
        teacher, "od", dataset, member_paths=paths, cache_dir=os.path.join(scratch, "cache")
    )
    return search_cost.measure(
        dataset, cache, backbone=config.search_backbone, trials=config.search_trials, epochs=config.search_epochs,
        batch_size=config.search_batch_size, reference_trials=config.search_reference_trials, scratch=scratch,
        shortcut=config.shortcut,
    )


def compare(measurements, units, rows):
    """Rows of the table: measurement / reference, and whether the target (if any) is met."""
    table = []
    for name, reference, sense, target in rows:
        ratio = measurements[name] / measurements[reference]
        met = None if target is None else (ratio >= target if sense == ">=" else ratio <= target)
        table.append({
            "measurement": name, "value": measurements[name], "unit": units.get(name, "images/s"),
            "reference": reference, "reference_value": measurements[reference],
            "ratio": ratio, "target": None if target is None else f"{sense} {target}", "met": met,
        })
    return table


def format_table(table):
    lines = ["| measurement | value | reference | value | ratio | target |", "|---|---|---|---|---|---|"]
    for row in table:
        unit = row["unit"]
        verdict = "" if row["met"] is None else (" met" if row["met"] else " MISSED")
        lines.append(
            f"| {row['measurement']} | {row['value']:.4g} {unit} | {row['reference']} | "
            f"{row['reference_value']:.4g} {unit} | {row['ratio']:.2f}x | {row['target'] or ''}{verdict} |"
        )
    return "\n".join(lines)


def machine():
    return {
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def run(config):
    """Every row of `config` (a bench_config.BenchConfig): prints the table, writes config.json, returns the report."""
    scratch = config.workdir or tempfile.mkdtemp(prefix="kdas_bench-")
    os.makedirs(scratch, exist_ok=True)
    load_before = machine()["load_average"]
    policy = mixed_policy(config.mixed_policy)
    try:
        dataset = random_dataset(config.steps * config.batch_size, config.image_size, config.channels,
                                 config.num_classes)
        bench = Bench(dataset, network=config.network, batch_size=config.batch_size, steps=config.steps,
                      warmup_steps=config.warmup_steps, scratch=os.path.join(scratch, "steps"),
                      repeats=config.repeats, shortcut=config.shortcut)
        measurements, rows = step_rows(bench, config.num_teachers, policy)
        search = search_rows(config, os.path.join(scratch, "search"))
    finally:
        if not config.workdir:
            shutil.rmtree(scratch, ignore_errors=True)
    measurements.update(search["measurements"])
    table = compare(measurements, search["units"], rows + search["rows"])
    report = {
        "settings": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("json", "workdir")},
        "mixed_policy": policy,
        "machine": {**machine(), "load_average_at_start": load_before},
        "measurements": measurements,
        "rows": table,
        "search": search["details"],
    }
    text = format_table(table)
    print(text)
    if config.json:
        storage.write_json(config.json, report)
        logging.info("wrote %s", config.json)
    return report
