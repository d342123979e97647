"""The chief's side of workers that vanish: heartbeats, and re-queueing the trials of silent workers.

A mixin of KDASOracle (which keeps `_last_heard`, `trial_losses` and `tuner_ids`
in its state): KerasTuner's oracle has no notion of a worker that stops
answering (keras-team/keras-tuner#915), so a trial whose worker died would
stay "running" for ever and the search would never end.
"""

import time

import keras_tuner
from absl import logging
from keras_tuner.src.engine import trial as trial_module

# A trial that loses its worker this many times is more likely killing its workers
# (out of memory) than unlucky: it is recorded FAILED instead of re-queued again.
MAX_TRIAL_LOSSES = 2


class WorkerLiveness:
    """heard_from / requeue_silent_trials for a keras_tuner.Oracle subclass."""

    def heard_from(self, trial_id, now=None):
        """The worker running `trial_id` is alive (it called the chief about it)."""
        if trial_id in self._last_heard:
            self._last_heard[trial_id] = time.monotonic() if now is None else now

    def requeue_silent_trials(self, timeout, now=None):
        """Take back each trial whose worker was silent for `timeout` seconds; returns their ids.

        Re-queued, not failed: the controller chose the sample, so its reward is
        worth having, and the trial's per-epoch checkpoint (on a shared work
        directory) lets the next worker continue it. A trial lost
        MAX_TRIAL_LOSSES times is recorded FAILED and gives the controller no
        reward, like any failed trial.
        """
        taken = self._requeue_silent_trials(timeout, time.monotonic() if now is None else now)
        if taken:
            self._check_consecutive_failures()  # may raise: outside the lock (see end_trial)
        return taken

    @keras_tuner.synchronized
    def _requeue_silent_trials(self, timeout, now):
        taken = []
        for tuner_id, trial in list(self.ongoing_trials.items()):
            trial_id = trial.trial_id
            silent = now - self._last_heard.setdefault(trial_id, now)
            if silent < timeout:
                continue
            del self.ongoing_trials[tuner_id]
            del self._last_heard[trial_id]
            self.tuner_ids.discard(tuner_id)
            self.trial_losses[trial_id] = self.trial_losses.get(trial_id, 0) + 1
            taken.append(trial_id)
            if self.trial_losses[trial_id] < MAX_TRIAL_LOSSES:
                self._retry_queue.append(trial_id)
                logging.warning("trial %s: worker %s silent for %.0f s; the trial is re-queued for another worker",
                                trial_id, tuner_id, silent)
                continue
            trial.status = trial_module.TrialStatus.FAILED
            trial.message = f"lost with its worker {self.trial_losses[trial_id]} times (last {tuner_id})"
            self.end_order.append(trial_id)
            self._save_trial(trial)
            logging.warning("trial %s: %s; recorded FAILED", trial_id, trial.message)
        if taken:
            self.save()
        return taken
