"""The search rows of kdas_tf.bench: wall time per candidate, paired candidate by candidate, and resident memory.

A real KDASOracle + KDASTuner search distils from the teacher-output cache. Each candidate is a turn:
the search trains it (oracle, controller and KerasTuner bookkeeping included) and, back to back with it,
the same candidate is trained with CE through the same Trainer outside the search, before the search's
training on odd turns and after it on even ones. The turn's ratio is the search's time for the candidate
over the CE training's. The cache is built before the search, timed, and its time shared out evenly over
the candidates (a search builds it once, for all of them). Resident memory is read after every trial,
before that turn's CE training: it must not grow with the trial count.
"""

import itertools
import os
import time

import tensorflow as tf

from kdas_tf import models
from kdas_tf.benchmarking import table
from kdas_tf.nas.controller import ControllerConfig
from kdas_tf.nas.oracle import KDASOracle
from kdas_tf.distill.trainer import TrainConfig, Trainer, build_fresh
from kdas_tf.nas.tuner import KDASTuner


def resident_bytes():
    """This process's resident set size now (not its peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is the best there is
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PairedTuner(KDASTuner):
    """KDASTuner that trains each candidate with CE too, beside its trial, and times both apart.

    `reference(architecture)` trains the CE reference and returns its seconds; search seconds are the
    wall clock less the references' time, so a trial's time runs from the end of the one before it.
    """

    def __init__(self, *args, reference, clock=time.perf_counter, **kwargs):
        self.reference, self.clock = reference, clock
        self.turns, self.resident, self.architectures = [], [], []
        self._excluded = 0.0  # seconds spent in references, not in the search
        self._last_end = None
        self._ce_seconds = None
        super().__init__(*args, **kwargs)

    def search_clock(self):
        return self.clock() - self._excluded

    def _train_reference(self, trial):
        start = self.clock()
        seconds = self.reference(trial.hyperparameters.values["architecture"])
        self._excluded += self.clock() - start
        return seconds

    def search(self, *args, **kwargs):
        self._last_end = self.search_clock()
        return super().search(*args, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        reference_first = len(self.turns) % 2 == 1
        self._ce_seconds = self._train_reference(trial) if reference_first else None
        return super().run_trial(trial, *args, **kwargs)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        end = self.search_clock()
        self.architectures.append(trial.hyperparameters.values["architecture"])
        self.resident.append(resident_bytes())
        ce_seconds = self._ce_seconds if self._ce_seconds is not None else self._train_reference(trial)
        self.turns.append({"search_seconds": end - self._last_end, "ce_seconds": ce_seconds,
                           "reference_first": self._ce_seconds is not None})
        self._last_end = self.search_clock()


def train_with_ce(arch, dataset, config, workdir, shortcut):
    """What the tuner does for one candidate, with CE and without the search: seconds."""
    start = time.perf_counter()
    info = dataset.info
    model = build_fresh(lambda: models.build_student(models.Architecture.parse(arch), info.num_classes,
                                                     info.image_shape, shortcut=shortcut),
                        seed=config.seed, strategy=tf.distribute.get_strategy())
    Trainer(model, dataset, config, workdir=workdir).fit()
    return time.perf_counter() - start


def build_cache(targets, epochs, seed):
    """Seconds to build the cached targets of the search's epochs (every candidate reads them)."""
    start = time.perf_counter()
    for epoch in range(epochs):
        targets.epoch_targets(epoch, seed)
    return time.perf_counter() - start


def measure(dataset, targets, *, backbone, trials, epochs, batch_size, scratch, shortcut="zero_pad"):
    """Run a `trials`-candidate OD search distilling from `targets` (a cache), each candidate paired with CE."""
    info = dataset.info
    backbone_size = models.count_parameters(backbone, info.num_classes, info.image_shape, shortcut=shortcut)
    oracle = KDASOracle(
        backbone=backbone, num_classes=info.num_classes, input_shape=info.image_shape, budget=2 * backbone_size,
        trials_per_round=trials, ops_per_addon=2,
        controller=ControllerConfig(num_decisions=models.num_stages(backbone) * 2,
                                    num_choices=len(models.ADDON_OPS), learning_rate=0.005, seed=0),
        shortcut=shortcut,
    )
    config = TrainConfig(epochs=epochs, batch_size=batch_size, loss="od", learning_rate=0.05)
    ce_config = TrainConfig(epochs=epochs, batch_size=batch_size, loss="ce", learning_rate=0.05)
    count = itertools.count()

    def reference(arch):
        return train_with_ce(arch, dataset, ce_config, os.path.join(scratch, "ce", str(next(count))), shortcut)

    cache_seconds = build_cache(targets, epochs, config.seed)
    tuner = PairedTuner(oracle, dataset=dataset, config=config, strategy=tf.distribute.get_strategy(),
                        targets=targets, shortcut=shortcut, directory=scratch, project_name="search",
                        reference=reference)
    tuner.oracle.verbose = 0
    tuner.search()
    share = cache_seconds / len(tuner.turns)
    resident_mb = [r / 2**20 for r in tuner.resident]
    last = f"resident_mb_after_trial_{len(resident_mb)}"
    turns = {
        "search": [{"search_seconds_per_candidate": turn["search_seconds"] + share,
                    "ce_seconds_per_candidate": turn["ce_seconds"]} for turn in tuner.turns],
        # Memory is read, not timed: one reading, its own interval.
        "memory": [{last: resident_mb[-1], "resident_mb_after_trial_1": resident_mb[0]}],
    }
    units = {"search_seconds_per_candidate": "s", "ce_seconds_per_candidate": "s", last: "MB",
             "resident_mb_after_trial_1": "MB"}
    rows = [
        table.Row("search_seconds_per_candidate", "ce_seconds_per_candidate", "search", "<=", 1.15),
        table.Row(last, "resident_mb_after_trial_1", "memory", "<=", 1.10),
    ]
    details = {
        "architectures": tuner.architectures,
        "turns": tuner.turns,
        "cache_build_seconds": cache_seconds,
        "resident_mb_after_each_trial": resident_mb,
    }
    return {"turns": turns, "units": units, "rows": rows, "details": details}
