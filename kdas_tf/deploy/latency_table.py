"""The latency table of --budget_metric=latency: the backbone and each add-on op at each stage, measured once as
LiteRT models of the deployed format on one machine, and the latency it predicts for a network.

The method is ProxylessNAS' and FBNet's: a network's latency is predicted as the sum of its parts' measured ones.
    backbone       the served network (uint8 images in; normalisation, softmax and argmax inside: deploy.serving),
                   converted to --latency_format as --formats converts it, at batch 1
    op at stage s  a one-module network x + op(x) on the stage's [1, H, W, C] feature map, less the same module
                   without the op (x + x), plus one residual add ((x + x) + x less x + x): what the op costs alone
                   in a module, its module's add included. A module of two ops counts its add twice, an
                   over-prediction of one add (a microsecond or two at these shapes). Never below zero.
A network's prediction is the backbone's latency plus its ops'; the add-ons keep their stage's shape, so the
table is additive as the parameter count is (models.costs.AdditiveCost, in nanoseconds).

Timing (`time_models`, the one place a clock is read): every model of a group gets its interpreter with
--latency_threads threads, then the group takes TURNS turns, in its order on even turns and reversed on odd ones
(as the bench's turns), each model per turn giving the median of RUNS invokes after WARMUP untimed ones
(litert.latency_ms). An op's entry is computed turn by turn from that turn's three timings (its module, the empty
module, the one-add module), so a load that comes and goes hits an op and its references alike; the entry is the
median over turns and carries the order-statistic interval of that median (reporting.stats, as the bench's
ratios: with 7 turns the min-max, 98% coverage). The backbone, the one absolute number of the table, takes its
turns in every stage's group: its median is over all of them (21 turns for three stages), so a load during one
part of the measurement cannot set it (measured alone, before the stages, a load of those seconds did: +56%).

The table is kept in the work directory (Workdir.latency_table) with the machine, format and threads it was
measured with, and what network and image shape it prices. `resolve` reuses it only for the same of all of these:
a table measured on another machine, in another format or with other threads is refused, never silently reused. A
table measured on the target elsewhere (python -m kdas_tf.latency --export_table=FILE) is given with
--latency_table=FILE, and then the machine is the table's.
"""

import contextlib
import dataclasses
import functools
import importlib.metadata
import io
import os
import platform
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kdas_tf import models
from kdas_tf.deploy import litert, serving
from kdas_tf.errors import UserError
from kdas_tf.models.costs import AdditiveCost
from kdas_tf.models.mac_count import stage_shapes
from kdas_tf.reporting import stats
from kdas_tf.runtime import schema, storage

TURNS, RUNS, WARMUP = 7, 100, 20
MODULE_KINDS = ("no_op", "one_add")  # x + x and (x + x) + x: the references an op's module is measured against
CALIBRATION_SAMPLES, CALIBRATION_SEED = 16, 0  # int8's ranges; latency does not depend on them
SPEC = {
    "format": schema.one_of(*litert.FILES), "threads": schema.POSITIVE, "machine": schema.OBJECT,
    "backbone": schema.TEXT, "shortcut": schema.TEXT, "num_classes": schema.POSITIVE,
    "input_shape": schema.list_of(schema.POSITIVE), "ops": schema.list_of(schema.TEXT), "backbone_ms": schema.NUMBER,
    "backbone_interval_ms": schema.may_lack(schema.list_of(schema.NUMBER)),  # tables measured before intervals
    "stages": schema.list_of({"shape": schema.list_of(schema.POSITIVE), "ops_ms": schema.each_value(schema.NUMBER),
                              "ops_interval_ms": schema.may_lack(schema.each_value(schema.list_of(schema.NUMBER))),
                              "measured_ms": schema.each_value(schema.NUMBER)}),
    "method": schema.OBJECT, "source": schema.TEXT,
}


@dataclasses.dataclass(frozen=True)
class Target:
    """What a table prices: the search's backbone on images of `input_shape`, in `format` with `threads` threads."""

    backbone: str
    num_classes: int
    input_shape: tuple
    shortcut: str = "zero_pad"
    format: str = "tflite_int8"
    threads: int = 1

    def record(self):
        """The table's fields that must equal the run's for the table to price its networks."""
        return {"format": self.format, "threads": self.threads, "backbone": self.backbone, "shortcut": self.shortcut,
                "num_classes": self.num_classes, "input_shape": list(self.input_shape), "ops": list(models.ADDON_OPS)}


def machine():
    """What a latency depends on besides the model: the processor, its cores, the system and the LiteRT runtime."""
    interpreter = litert.interpreter_class().__module__.split(".")[0]
    package = "ai-edge-litert" if interpreter == "ai_edge_litert" else "tensorflow"
    return {"cpu": _cpu_name(), "cores": os.cpu_count(), "system": platform.system(),
            "architecture": platform.machine(), "interpreter": f"{package} {importlib.metadata.version(package)}",
            "converter": f"tensorflow {tf.__version__}"}


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


# --- measuring ------------------------------------------------------------------------------------------


def measure_table(target, *, measure=None):
    """The table of `target`, measured here. measure({key: model description}) -> {key: ms of each turn} times the
    models (default: measure_turns; a single number is one turn); a description is ('network', architecture),
    ('module', shape, op or MODULE_KINDS) or ('file', path of a .tflite file)."""
    measure = measure or functools.partial(measure_turns, target=target)
    backbone_turns, stages = [], []
    for shape in stage_shapes(target.backbone, target.input_shape, shortcut=target.shortcut):
        kinds = [*MODULE_KINDS, *(op for op in models.ADDON_OPS if op != "skip")]
        described = {"backbone": ("network", target.backbone),
                     **{kind: ("module", tuple(shape), kind) for kind in kinds}}
        measured = {key: as_turns(ms) for key, ms in measure(described).items()}
        backbone_turns.extend(measured.pop("backbone"))
        add = measured["one_add"] - measured["no_op"]  # turn by turn
        costs = {op: summarise(measured[op] - measured["no_op"] + add) for op in models.ADDON_OPS if op != "skip"}
        stages.append({"shape": list(shape),
                       "ops_ms": {op: max(0.0, costs[op]["ms"]) if op in costs else 0.0 for op in models.ADDON_OPS},
                       "ops_interval_ms": {op: costs[op]["interval_ms"] if op in costs else [0.0, 0.0]
                                           for op in models.ADDON_OPS},
                       "measured_ms": {key: float(np.median(values)) for key, values in measured.items()}})
    backbone = summarise(backbone_turns)
    logging.info("latency table of %s (%s, %d thread(s)): backbone %.3f ms", target.backbone, target.format,
                 target.threads, backbone["ms"])
    return {**target.record(), "machine": machine(), "backbone_ms": backbone["ms"],
            "backbone_interval_ms": backbone["interval_ms"], "stages": stages,
            "method": {"statistic": "median over turns of each turn's difference (an op's module less the empty "
                                    "one, plus one add); interval: the order-statistic interval of that median",
                       "confidence": stats.CONFIDENCE, "turns": TURNS, "runs": RUNS, "warmup": WARMUP, "batch": 1},
            "source": "measured"}


def as_turns(measured):
    """A measurement's turns as an array: a list of each turn's ms, or one number (one turn)."""
    return np.atleast_1d(np.asarray(measured, dtype=float))


def summarise(per_turn):
    """{"ms": the median over turns, "interval_ms": its order-statistic interval, "coverage", "turns"}."""
    median, low, high, covered = stats.median_interval(per_turn)
    return {"ms": median, "interval_ms": [low, high], "coverage": covered, "turns": len(per_turn)}


def measure_turns(described, *, target):
    """{key: [ms of each turn]} of the models `described` ({key: description}), converted to target.format."""
    calls = {key: invoker(convert_model(description, target), target.threads)
             for key, description in described.items()}
    return time_models(calls)


def time_models(calls, *, turns=TURNS, runs=RUNS, warmup=WARMUP):
    """{key: [ms of each turn]} of calls {key: () -> None}: in each of `turns` turns every call, in the given order
    on even turns and reversed on odd ones, gives the median of `runs` timed calls after `warmup` untimed ones."""
    per_turn = {key: [] for key in calls}
    keys = list(calls)
    for turn in range(turns):
        for key in keys if turn % 2 == 0 else reversed(keys):
            per_turn[key].append(litert.latency_ms(lambda _, call=calls[key]: call(), None, runs=runs, warmup=warmup))
    return per_turn


def invoker(content, threads):
    """One invoke of a .tflite flatbuffer on a zero input of its shape and type, with `threads` threads."""
    interpreter = litert.interpreter_class()(model_content=content, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    image = np.zeros(detail["shape"], detail["dtype"])

    def call():
        interpreter.set_tensor(detail["index"], image)
        interpreter.invoke()

    return call


def convert_model(description, target):
    """The .tflite flatbuffer (bytes) of a model description, in target.format (a file's: as it is)."""
    if description[0] == "file":
        with open(description[1], "rb") as f:
            return f.read()
    if description[0] == "network":
        return served_network(description[1], target)
    _, shape, kind = description
    inputs = keras.Input(shape, batch_size=1, name="features")
    if kind in MODULE_KINDS:
        doubled = keras.layers.Add()([inputs, inputs])
        outputs = doubled if kind == "no_op" else keras.layers.Add()([doubled, inputs])
    else:
        outputs = models.addon_module(inputs, [kind], name="module")
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs))
    if target.format == "tflite_int8":
        rng = np.random.default_rng(CALIBRATION_SEED)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.standard_normal((1, *shape)).astype(np.float32)] for _ in range(CALIBRATION_SAMPLES))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with quietly():
        return converter.convert()


def served_network(architecture, target):
    """The .tflite flatbuffer of `architecture` (untrained: latency does not depend on the weights) as the run
    serves it: deploy.serving's SavedModel converted by deploy.litert, int8 calibrated on random images."""
    model = models.build_student(architecture, target.num_classes, tuple(target.input_shape),
                                 shortcut=target.shortcut)
    channels = target.input_shape[-1]
    with tempfile.TemporaryDirectory(prefix="kdas-latency-") as directory, quietly():
        serving.export_saved_model(model, os.path.join(directory, "model"), mean=[127.5] * channels,
                                   std=[64.0] * channels)
        images = np.random.default_rng(CALIBRATION_SEED).integers(
            0, 256, (CALIBRATION_SAMPLES, *target.input_shape), dtype=np.uint8)
        return litert.convert(os.path.join(directory, "model"), serving.SIGNATURE,
                              representative=images if target.format == "tflite_int8" else None)


@contextlib.contextmanager
def quietly():
    """Without the lines every conversion prints: Keras' export its signature, TensorFlow 'Assets written to'."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("WARNING")
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            yield
    finally:
        logger.setLevel(level)


# --- using a table ----------------------------------------------------------------------------------------


def predict_ms(table, architecture):
    """The latency the table predicts for a network of its backbone: the backbone's plus each op's, in ms."""
    cost = as_cost(table)
    return cost.of(architecture) / 1e6


def as_cost(table):
    """The table as the search's AdditiveCost, in integer nanoseconds."""
    per_stage = np.array([[round(1e6 * stage["ops_ms"][op]) for op in models.ADDON_OPS] for stage in table["stages"]],
                         np.int64)
    where = table["machine"]
    note = (f"{table['format']}, {table['threads']} thread(s), measured on {where.get('cpu')} ({where.get('cores')} "
            f"cores, {where.get('interpreter')})" + ("" if table["source"] == "measured" else f"; {table['source']}"))
    return AdditiveCost("latency", table["backbone"], round(1e6 * table["backbone_ms"]), per_stage, note=note)


def markdown(table):
    """The table as Markdown: each op's latency at each stage with the interval of its median, and the backbone's."""
    stages = table["stages"]
    header = " | ".join(f"stage {i + 1} ({'x'.join(map(str, stage['shape']))})" for i, stage in enumerate(stages))
    lines = [f"| op | {header} |", "|---" * (len(stages) + 1) + "|"]

    def entry(stage, op):
        low, high = stage.get("ops_interval_ms", {}).get(op) or (None, None)  # tables measured before intervals
        interval = "" if low is None or op == "skip" else f" ({1000 * low:.1f} to {1000 * high:.1f})"
        return f"{1000 * stage['ops_ms'][op]:.1f} us{interval}"

    for op in models.ADDON_OPS:
        lines.append(f"| {op} | " + " | ".join(entry(stage, op) for stage in stages) + " |")
    low, high = table.get("backbone_interval_ms") or (table["backbone_ms"],) * 2
    return ("\n".join(lines) + f"\n\n{table['backbone']} alone: {table['backbone_ms']:.4f} ms ({low:.4f} to "
            f"{high:.4f}; {table['format']}, {table['threads']} thread(s), {table['machine'].get('cpu')}, "
            f"{table['machine'].get('cores')} cores)\n")


def load(path):
    """A table file, checked before use: a malformed one is refused in one line."""
    if not os.path.isfile(path):
        raise UserError(f"--latency_table={path}: no such file; measure one on the target with python -m "
                        "kdas_tf.latency --export_table=FILE")
    return schema.read(path, SPEC, "measure it again with python -m kdas_tf.latency --export_table=FILE")


def check(table, target, where):
    """Refuse a table that prices another network, format or thread count than `target` (where: its file)."""
    wanted = target.record()
    differ = [f"{key} {table.get(key)!r} (this run: {value!r})" for key, value in wanted.items()
              if table.get(key) != value]
    if differ:
        raise UserError(f"{where} is a latency table of another run: {'; '.join(differ)}. Measure one for this run "
                        "(python -m kdas_tf.latency with this run's flags) or use another --workdir")
    return table


def check_machine(table, where):
    """Refuse a table measured on another machine than this one."""
    here = machine()
    differ = [f"{key} {table['machine'].get(key)!r} (here {value!r})" for key, value in here.items()
              if table["machine"].get(key) != value]
    if differ:
        raise UserError(f"{where} was measured on another machine ({'; '.join(differ)}): to keep pricing "
                        f"networks for that machine, pass --latency_table={where}; to search for this one, use "
                        "another --workdir")
    return table


_MEASURED = {}  # Target -> the table measured for it in this process


def resolve(target, kept_path, given=None, *, missing="keep", measure=None):
    """The table a run prices its networks with: `given` (--latency_table), else the one kept at `kept_path`, else
    measured here now. Each is checked against `target`; one measured here, against this machine. The table used
    is kept at `kept_path` (a search's work directory remembers it); a kept table and a given one must agree.

    missing: what to do when neither exists: 'keep' (measure and keep), 'measure' (measure, keep nothing: the dry
    run) or 'refuse' (reading a finished search, which must have one).
    """
    kept = load(kept_path) if kept_path and os.path.exists(kept_path) else None
    if given:
        table = check(load(given), target, given)
        if kept is not None and _measurement(kept) != _measurement(table):
            raise UserError(f"--latency_table={given} is not the table {kept_path} was searched with: pass that "
                            "one (or no --latency_table), or use another --workdir")
        table = {**table, "source": f"given: {os.path.abspath(given)}"}
    elif kept is not None:
        table = check(kept, target, kept_path)
        if not table["source"].startswith("given") and missing != "refuse":  # reading a finished search prices
            check_machine(table, kept_path)                                  # nothing new: any machine may
        return table
    elif missing == "refuse":
        raise UserError(f"{kept_path} is missing: this search's latency table was not kept; pass it as "
                        "--latency_table=FILE")
    else:
        # Measured once per process: a search resolves its budget before it claims its work directory (keeping
        # nothing there) and keeps this same table once it holds the directory.
        table = _MEASURED.get(target) or measure_table(target, measure=measure)
        _MEASURED[target] = table
    if kept_path and missing == "keep" and kept is None:
        storage.write_json(kept_path, table)
    return table


def _measurement(table):
    """A table's numbers and where they were measured, without how it came to a run."""
    return {key: value for key, value in table.items() if key != "source"}
