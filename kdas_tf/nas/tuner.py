"""KDASTuner: trains each candidate the oracle proposes with the distillation loop.

The tuner only trains: it builds the candidate from the trial's architecture
string, trains it with the search loss for the search epochs (checkpointed in
the trial's directory, so a killed trial resumes mid-way) and reports the
validation accuracy that the oracle turns into the controller's reward. A fault
of the machine (a full disk, out of memory, a checkpoint that reads back
corrupt, which is moved aside) has the trial trained again; a NaN loss fails it.
"""

import itertools
import json
import os
import time

import keras_tuner
import tensorflow as tf
from absl import logging
from keras_tuner.engine import trial as trial_module

from kdas_tf import _internals, models
from kdas_tf.runtime import progress, schema, storage
from kdas_tf.nas import summaries
from kdas_tf.errors import UserError
from kdas_tf.nas.oracle import OBJECTIVE
from kdas_tf.distill.trainer import Trainer, UnreadableCheckpointError, build_fresh
from kdas_tf.runtime.workdir import trial_results

# Faults of the machine, not verdicts on the network: disk full or unwritable, out of memory (host or
# accelerator), a file that reads back corrupt. A trial that meets one is trained again.
MACHINE_FAULTS = (OSError, MemoryError, tf.errors.ResourceExhaustedError, tf.errors.DataLossError,
                  UnreadableCheckpointError)


class KDASTuner(keras_tuner.Tuner):
    """Runs KDAS trials: `run_trial` trains one candidate and returns its validation accuracy."""

    def __init__(self, oracle, *, dataset, config, strategy, targets=None, logdir=None, shortcut="zero_pad",
                 rounds=1, parallel_trials=1, run_progress=None, **kwargs):
        self.dataset = dataset
        self.rounds = rounds  # for the progress lines: `trial i/N (round r/R)` and the search's ETA
        self.parallel_trials = parallel_trials
        self.run_progress = run_progress
        self.shortcut = shortcut  # the ResNets' shortcut of every candidate (models.build_student)
        self.train_config = config
        self.strategy = strategy
        self.targets = targets
        self.logdir = logdir
        _internals.quiet_failed_trials()  # a failed trial's reason is logged below in one line, not its traceback
        super().__init__(oracle, hypermodel=None, **kwargs)
        # KerasTuner reloads the oracle only if this tuner id's file exists: a search begun
        # with --parallel_trials (worker ids) and resumed in one process would start over.
        if not _internals.is_worker(self) and not self.oracle.trials \
                and os.path.exists(_internals.oracle_file(self.oracle)):
            self.oracle.reload()
        # KerasTuner reloads a project only if this tuner's file exists, and writes it
        # after the first trial: write it now, so a kill during trial 0 still resumes.
        self.save()
        self.oracle.create_trial = _pause_when_idle(self.oracle.create_trial)

    def reload(self):
        """KerasTuner's reload, with the tuner's own file checked first: it holds nothing of the search's."""
        read_tuner_file(_internals.tuner_file(self))
        super().reload()

    def run_trial(self, trial, *args, **kwargs):
        """Train the trial's candidate; returns {val_top1: its validation accuracy}.

        A fault of the machine (MACHINE_FAULTS) is raised as it is: KerasTuner marks the trial INVALID and the
        oracle hands it out again, up to its max_retries_per_trial, without a reward. Anything else (a NaN
        loss, a bug) is a FailedTrialError: the trial is recorded FAILED at once, as a verdict on the network.
        """
        try:
            return self._train_candidate(trial)
        except UnreadableCheckpointError as error:
            aside = move_aside(error.directory)
            logging.warning("trial %s: %s; moved to %s, the trial trains again from scratch", trial.trial_id,
                            error, aside)
            raise UnreadableCheckpointError(f"trial {trial.trial_id}: its checkpoint could not be restored "
                                            f"({error.__cause__ or error}); moved to {aside}", aside) from error
        except MACHINE_FAULTS as error:
            logging.warning("trial %s: %s: %s; the trial is trained again", trial.trial_id, type(error).__name__,
                            error)
            raise
        except keras_tuner.errors.FatalError:
            raise
        except Exception as error:  # the traceback KerasTuner records keeps the original exception too
            reason = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
            logging.warning("trial %s failed: %s; recorded FAILED, without a reward (traceback: %s)", trial.trial_id,
                            reason, os.path.join(self.get_trial_dir(trial.trial_id), "trial.json"))
            raise keras_tuner.errors.FailedTrialError(reason) from error

    def _train_candidate(self, trial):
        values = trial.hyperparameters.values
        arch = models.Architecture.parse(values["architecture"])
        trial_dir = self.get_trial_dir(trial.trial_id)
        info = self.dataset.info
        logging.info("%s: %s  %d parameters, %d epochs; %s", self.trial_progress(trial), arch,
                     values.get("parameters", 0), self.train_config.epochs, self.search_eta_text())
        model = build_fresh(lambda: models.build_student(arch, info.num_classes, info.image_shape,
                                                         shortcut=self.shortcut),
                            seed=self.train_config.seed, strategy=self.strategy)
        trainer = Trainer(
            model, self.dataset, self.train_config, strategy=self.strategy, targets=self.targets,
            workdir=trial_dir, name=f"trial {trial.trial_id}", run_progress=self.run_progress,
            logdir=os.path.join(self.logdir, f"trial_{trial.trial_id}") if self.logdir else None,
        )
        start = time.time()
        metrics = trainer.fit()
        val_top1 = metrics["val"]["top1"]
        storage.write_json(os.path.join(trial_dir, "result.json"), {
            "architecture": str(arch), "shortcut": self.shortcut, "parameters": values.get("parameters"),
            "val": metrics["val"],
            "seconds": time.time() - start, "tuner_id": self.tuner_id,
        })
        if self.logdir:
            summaries.write_trial(os.path.join(self.logdir, f"trial_{trial.trial_id}"), trial_id=trial.trial_id,
                                  values=values, reward=val_top1)
        logging.info("trial %s: %s  %d parameters  val top1 %.2f%%", trial.trial_id, arch,
                     values.get("parameters", 0), 100 * val_top1)
        return {OBJECTIVE: val_top1}

    def trial_progress(self, trial):
        """'trial 03 (4/12, round 1/2)': trial ids count every trial of the search from 00."""
        return (f"trial {trial.trial_id} ({int(trial.trial_id) + 1}/{self.oracle.max_trials}, round "
                f"{trial.hyperparameters.values.get('round', 0) + 1}/{self.rounds})")

    def search_eta_text(self):
        """The search's ETA from the times of its finished trials (every process's, read from result.json)."""
        seconds = []
        for path in trial_results(self.project_dir):
            try:
                with open(path) as f:
                    seconds.append(float(json.load(f)["seconds"]))
            except (OSError, ValueError, KeyError, TypeError):  # being written, or another version's file
                continue
        eta = progress.search_eta(seconds, self.oracle.max_trials - len(seconds), self.parallel_trials)
        return "search ETA after the first trial" if eta is None else f"search ETA {progress.duration(eta)}"

    def save_model(self, trial_id, model, step=0):
        """Trials keep their checkpoints; the final model is retrained from scratch."""

    def load_model(self, trial):
        raise NotImplementedError(
            f"trials keep checkpoints, not models: python -m kdas_tf.export --workdir=WORKDIR "
            f"--model=search/trial_{trial.trial_id} writes trial {trial.trial_id} as a SavedModel")


def read_tuner_file(path):
    """A tuner's file in the search's project (KerasTuner's, `{}` for ours), checked: one line if it is not valid."""
    return schema.read(path, schema.OBJECT, "delete it and rerun the same command (it holds no results; KerasTuner "
                       "writes it again)")


def move_aside(directory):
    """Rename `directory` to the first free `directory.corrupt-N` and return that path: a user's files are
    kept where they can be looked at, never deleted."""
    for number in itertools.count(1):
        aside = f"{directory}.corrupt-{number}"
        if not os.path.exists(aside):
            os.rename(directory, aside)
            return aside


def _pause_when_idle(create_trial, seconds=1.0):
    """The oracle answers IDLE while a round waits for its last trials; the search loop
    would ask again at once, so each IDLE answer waits a moment first."""

    def create_trial_or_wait(tuner_id):
        trial = create_trial(tuner_id)
        if trial.status == trial_module.TrialStatus.IDLE:
            time.sleep(seconds)
        return trial

    return create_trial_or_wait
