"""What a person watching a run sees: the step it is in, about how long is left, a bar inside an epoch.

A run is planned in epochs of training: the teachers' (members not yet trained x --teacher_epochs), the
search's (trials not yet finished x --search_epochs) and the final rows' (trainings not yet finished x
--epochs). RunProgress counts the epochs as they end; the whole run's ETA is the wall time this process
has spent per finished epoch (tracing, evaluation and teacher outputs included) times the epochs left,
counted from the start of the first step that trains (a resumed run's reading back of finished steps is
not an epoch's cost).
Trainings resumed mid-way give back the epochs their checkpoint already holds. Every step logs its start
with that ETA, and every epoch line ends with it.

Inside an epoch a tqdm bar runs on stderr when stderr is a terminal; a log file or a pipe gets only the
epoch lines. Search trials log `trial i/N (round r/R)` with the search's own ETA (search_eta).
"""

import sys
import time

import tqdm
from absl import logging


class RunProgress:
    """The steps of one run, each with its epochs of training left, in the order they run."""

    def __init__(self, plan, *, clock=time.monotonic):
        self.epochs_left = dict(plan)  # step name -> epochs of training left
        self.clock = clock
        self.started = clock()
        self.epochs_done = 0
        self.step = None

    def start(self, step, epochs_left=None):
        """Log the start of `step` (with its epochs left, recounted if given) and the whole run's ETA.

        The steps before it have ended: what they did not train (a search whose rounds converged early)
        is not left.
        """
        if epochs_left is not None:
            self.epochs_left[step] = epochs_left
        if not self.epochs_done:  # nothing trained yet: what came before (loading, finished steps) is no epoch's
            self.started = self.clock()
        self.step = step
        names = list(self.epochs_left)
        for earlier in names[:names.index(step)]:
            self.epochs_left[earlier] = 0
        logging.info("step %d/%d: %s, %d epochs to train; %s", names.index(step) + 1, len(names), step,
                     self.epochs_left[step], self.eta_text())

    def skipped(self, epochs):
        """`epochs` of the current step were trained before (a training resumed from its checkpoint)."""
        self.epochs_left[self.step] = max(0, self.epochs_left[self.step] - epochs)

    def epoch_done(self, count=1):
        self.epochs_done += count
        self.skipped(count)

    def eta(self):
        """Seconds left for the whole run, or None before the first epoch has been measured."""
        if not self.epochs_done:
            return None
        return (self.clock() - self.started) / self.epochs_done * sum(self.epochs_left.values())

    def eta_text(self):
        eta = self.eta()
        return "run ETA after the first epoch" if eta is None else f"run ETA {duration(eta)}"


def search_eta(seconds_per_trial, trials_left, parallel_trials=1):
    """Seconds left for a search: the mean of its finished trials' times, `parallel_trials` at once; or None."""
    if not seconds_per_trial:
        return None
    rounds_of_trials = -(-trials_left // max(1, parallel_trials))
    return sum(seconds_per_trial) / len(seconds_per_trial) * rounds_of_trials


def epoch_bar(total, name, stream=None):
    """A bar over an epoch's `total` batches on a terminal (tqdm on stderr); a silent no-op elsewhere."""
    stream = stream or sys.stderr
    return tqdm.tqdm(total=total, desc=name, unit="batch", leave=False, file=stream, dynamic_ncols=True,
                     disable=not _is_terminal(stream))


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


def duration(seconds):
    """'1h02m', '3m07s': an ETA's precision."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
