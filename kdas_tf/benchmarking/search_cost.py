"""The search rows of kdas_tf.bench: wall time per candidate and resident memory across trials.

A real KDASOracle + KDASTuner search distils from the teacher-output cache;
its wall time per candidate (oracle, controller, KerasTuner bookkeeping and
the amortised cache build included) is compared with training the same
candidates with CE through the same Trainer, outside any search. Resident
memory is read after every trial: it must not grow with the trial count.
"""

import os
import time

import numpy as np
import tensorflow as tf

from kdas_tf import models
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


class TimedTuner(KDASTuner):
    """KDASTuner that notes when each trial ends, its architecture and the resident memory then."""

    def __init__(self, *args, **kwargs):
        self.trial_ends, self.architectures, self.resident, self.training_seconds = [], [], [], []
        super().__init__(*args, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        start = time.perf_counter()
        result = super().run_trial(trial, *args, **kwargs)
        self.training_seconds.append(time.perf_counter() - start)
        return result

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self.trial_ends.append(time.perf_counter())
        self.architectures.append(trial.hyperparameters.values["architecture"])
        self.resident.append(resident_bytes())


def train_with_ce(arch, dataset, config, workdir, shortcut):
    """What the tuner does for one candidate, with CE and without the search: seconds."""
    start = time.perf_counter()
    info = dataset.info
    model = build_fresh(lambda: models.build_student(models.Architecture.parse(arch), info.num_classes,
                                                     info.image_shape, shortcut=shortcut),
                        seed=config.seed, strategy=tf.distribute.get_strategy())
    Trainer(model, dataset, config, workdir=workdir).fit()
    return time.perf_counter() - start


def measure(dataset, targets, *, backbone, trials, epochs, batch_size, reference_trials, scratch, shortcut="zero_pad"):
    """Run a `trials`-candidate OD search distilling from `targets` (a targets source) and its CE reference."""
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
    tuner = TimedTuner(oracle, dataset=dataset, config=config, strategy=tf.distribute.get_strategy(),
                       targets=targets, shortcut=shortcut, directory=scratch, project_name="search")
    tuner.oracle.verbose = 0
    start = time.perf_counter()
    tuner.search()
    trial_seconds = np.diff([start] + tuner.trial_ends)
    # The CE reference retrains evenly spaced candidates.
    chosen = np.unique(np.linspace(0, len(trial_seconds) - 1, max(1, min(reference_trials, len(trial_seconds)))).round().astype(int))
    ce_config = TrainConfig(epochs=epochs, batch_size=batch_size, loss="ce", learning_rate=0.05)
    ce_seconds = [
        train_with_ce(tuner.architectures[i], dataset, ce_config, os.path.join(scratch, "ce", str(i)), shortcut)
        for i in chosen
    ]
    resident_mb = [r / 2**20 for r in tuner.resident]
    measurements = {
        # Every trial: the cache is built once, by the first candidates, for all of them.
        "search_seconds_per_candidate": float(np.mean(trial_seconds)),
        "ce_seconds_per_candidate": float(np.mean(ce_seconds)),
        f"resident_mb_after_trial_{len(resident_mb)}": resident_mb[-1],
        "resident_mb_after_trial_1": resident_mb[0],
    }
    units = {name: ("s" if name.endswith("candidate") else "MB") for name in measurements}
    rows = [
        ("search_seconds_per_candidate", "ce_seconds_per_candidate", "<=", 1.15),
        (f"resident_mb_after_trial_{len(resident_mb)}", "resident_mb_after_trial_1", "<=", 1.10),
    ]
    details = {
        "architectures": tuner.architectures,
        "trial_seconds": [float(s) for s in trial_seconds],
        # run_trial alone (build, train, evaluate); the rest of trial_seconds is the oracle and KerasTuner
        "training_seconds": [float(s) for s in tuner.training_seconds],
        "reference_trials": [int(i) for i in chosen],
        "ce_seconds": ce_seconds,
        "resident_mb_after_each_trial": resident_mb,
    }
    return {"measurements": measurements, "units": units, "rows": rows, "details": details}
