"""KDASOracle: the LSTM controller deciding which add-ons to try, as a KerasTuner Oracle.

The oracle decides and remembers; the tuner trains. Each trial's values hold
one op per (stage, slot) plus the full architecture string (with the round's
backbone), so a worker needs nothing but the trial to build the candidate.
The rounds are kdas_tf.nas.rounds' (`search_rounds`): each round's backbone
and controller, the budget's mask, and what the controller learns from trials
and repeats. This module is KerasTuner's side: the search space, trials in and
out, their ends (once, taken back, retried), the state file.

Parallel trials (kdas_tf.parallel): with K trials in flight the controller
still learns once per finished trial, from the tokens stored in that trial's
own values (never from whichever sample came last), in the order trials end.
A worker is told to stop only once no trial is in flight, so a trial re-queued
late still finds a worker. A trial whose worker falls silent (the chief keeps
the heartbeats, kdas_tf.parallel.chief) is taken back: re-queued, and given
up (FAILED, no reward) after MAX_TRIAL_LOSSES losses; see `take_back`. A late
report of a trial that was already recorded is ignored, so each trial ends,
and teaches the controller, exactly once.

Faults: a trial that meets a fault of the machine (a full disk, out of memory, a
corrupt checkpoint) ends INVALID, is queued again by KerasTuner and trained up
to MAX_FAULT_RETRIES more times before it is recorded FAILED. An INVALID end
is never scored, so the fault teaches the controller nothing; a NaN loss is a
verdict on the network and fails the trial at once (kdas_tf.nas.tuner.run_trial).
"""

import json

import keras_tuner
import numpy as np
from absl import logging
from keras_tuner.engine import trial as trial_module

from kdas_tf import _internals, models
from kdas_tf.runtime import schema, storage
from kdas_tf.models.costs import COST_KEYS
from kdas_tf.nas.budget import analytic_cost, check_budget
from kdas_tf.nas.controller_config import check_cost_exponent, soft_reward
from kdas_tf.nas.rounds import Rounds, canonical_key, controller_config, slot_names
from kdas_tf.errors import UserError, one_line

OBJECTIVE = "val_top1"
RUNNING, IDLE, STOPPED = (trial_module.TrialStatus.RUNNING, trial_module.TrialStatus.IDLE,
                          trial_module.TrialStatus.STOPPED)
# A trial that loses its worker this many times is more likely killing its workers
# (out of memory) than unlucky: it is recorded FAILED instead of re-queued again.
MAX_TRIAL_LOSSES = 2
# A trial that meets a fault of the machine (kdas_tf.nas.tuner.MACHINE_FAULTS) is trained again this many times
# before it is recorded FAILED: a full disk or a memory peak may pass, and the sample is worth its reward.
MAX_FAULT_RETRIES = 2


def _of_rounds(name):
    """An attribute (or method) of the search's Rounds, read on the oracle where its users have always read it."""
    return property(lambda self: getattr(self.search_rounds, name))


class KDASOracle(_internals.OracleInternals, keras_tuner.Oracle):
    """Samples add-on operations with a REINFORCE-trained LSTM under a budget (parameters, MACs or latency)."""

    round = _of_rounds("round")
    round_converged = _of_rounds("round_converged")
    round_backbones = _of_rounds("round_backbones")
    controller = _of_rounds("controller")
    known_scores = _of_rounds("known_scores")
    trial_updates = _of_rounds("trial_updates")
    repeated_samples = _of_rounds("repeated_samples")
    repeat_updates = _of_rounds("repeat_updates")
    tokens_of = _of_rounds("tokens_of")

    def __init__(self, *, backbone, num_classes, input_shape, budget, rounds=1, trials_per_round=10,
                 ops_per_addon=2, controller=None, max_samples_per_trial=200, seed=0, logdir=None,
                 max_consecutive_failed_trials=3, shortcut="zero_pad", cost=None, cost_exponent=0.0):
        """budget: M in the unit of `cost`, an AdditiveCost (kdas_tf.models.costs; default: parameters).
        cost_exponent: w of the reward val top-1 x (cost / M)^w (`reward`; 0: the top-1 alone)."""
        self.backbone = models.as_architecture(backbone)
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.shortcut = shortcut  # of the ResNets' stages: the sizes the budget is checked against
        self.cost_model = cost or analytic_cost("parameters", self.backbone, num_classes, self.input_shape, shortcut)
        self.budget = check_budget(self.backbone, budget, num_classes, self.input_shape, shortcut, cost=self.cost_model)
        self.cost_exponent = check_cost_exponent(cost_exponent)
        if rounds < 1 or trials_per_round < 1 or ops_per_addon < 1:
            raise ValueError("--rounds, --trials_per_round and --ops_per_addon must each be at least 1")
        self.rounds = rounds
        self.trials_per_round = trials_per_round
        self.ops_per_addon = ops_per_addon
        self.num_stages = self.backbone.num_stages
        self.max_samples_per_trial = max_samples_per_trial
        self.controller_config = controller_config(controller, num_stages=self.num_stages,
                                                   ops_per_addon=ops_per_addon, seed=seed)
        self.addon_costs = self.cost_model.table(ops_per_addon)
        space = keras_tuner.HyperParameters()
        for name in slot_names(self.num_stages, ops_per_addon):
            space.Choice(name, list(models.ADDON_OPS))
        super().__init__(
            objective=keras_tuner.Objective(OBJECTIVE, "max"), max_trials=rounds * trials_per_round,
            hyperparameters=space, allow_new_entries=False, tune_new_entries=False, seed=seed + 1,
            max_retries_per_trial=MAX_FAULT_RETRIES, max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        self.search_rounds = Rounds(
            backbone=self.backbone, budget=self.budget, costs=self.addon_costs,
            controller_config=self.controller_config, parameters=self.parameters, cost=self.cost, rounds=rounds,
            trials_per_round=trials_per_round, ops_per_addon=ops_per_addon,
            max_samples_per_trial=max_samples_per_trial, logdir=logdir, metric=self.cost_model.metric,
        )
        self.trial_tuners = {}  # trial id -> tuner id of the worker that last took it
        self.trial_losses = {}  # trial id -> times its worker fell silent
        self.failure = None  # the error that stopped the search (too many failed trials)

    def parameters(self, arch):
        return models.count_parameters(arch, self.num_classes, self.input_shape, shortcut=self.shortcut)

    def cost(self, arch):
        """What the budget counts of a network (--budget_metric): its parameters, MACs or predicted latency."""
        return self.cost_model.of(arch)

    # --- KerasTuner hooks -----------------------------------------------------------

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        if self.ongoing_trials and tuner_id not in self.ongoing_trials and not _internals.retry_queue(self) \
                and len(self.trials) >= self.max_trials:
            self.tuner_ids.add(tuner_id)
            return trial_module.Trial(self.get_space(), status=IDLE)  # not STOPPED: see the module docstring
        trial = super().create_trial(tuner_id)
        if trial.status == RUNNING:
            self.trial_tuners[trial.trial_id] = tuner_id
        return trial

    def populate_space(self, trial_id):
        rounds = self.search_rounds
        if self._round_finished():
            if rounds.is_last():
                return {"status": IDLE if self.ongoing_trials else STOPPED}
            if self.ongoing_trials:
                return {"status": IDLE}  # the round's best is known only when all its trials ended
            best = self.best_trial(rounds.round)
            rounds.start_next(None if best is None else best.hyperparameters.values["architecture"])
        values = rounds.propose(self._in_training_or_failed())
        return {"status": IDLE} if values is None else {"status": RUNNING, "values": values}

    def _round_finished(self):
        return self.search_rounds.finished(t.hyperparameters.values for t in self.trials.values())

    def _in_training_or_failed(self):
        """Networks not to train again: in training, or failed (they would most likely fail again)."""
        failed = [t for t in self.trials.values() if t.status == trial_module.TrialStatus.FAILED]
        return {canonical_key(t.hyperparameters.values) for t in [*self.ongoing_trials.values(), *failed]}

    def best_trial(self, round_index=None):
        """The completed trial with the highest reward (of one round, or of all); ties go to the smaller network.

        The paper's m* = argmax R(m) s.t. |m| <= M leaves ties open; of two equally
        accurate students the smaller is the better one to serve. Under --cost_exponent
        the reward is MnasNet's, which also picks its found network by it.
        """
        done = [t for t in self.trials.values() if t.status == trial_module.TrialStatus.COMPLETED
                and t.score is not None and round_index in (None, t.hyperparameters.values.get("round"))]
        return max(done, key=self.rank, default=None)

    def rank(self, trial):
        """best_trial's order of a completed trial: its reward, then the fewer parameters."""
        return self.reward(trial), -trial.hyperparameters.values["parameters"]

    def reward(self, trial):
        """What the controller learns from a trial: its score (the validation top-1) x (cost / M)^cost_exponent,
        the cost in the budget's metric as the trial recorded it; with cost_exponent 0, the score itself."""
        if trial.score is None:
            return None
        cost = trial.hyperparameters.values[COST_KEYS[self.cost_model.metric]] if self.cost_exponent else None
        return soft_reward(trial.score, cost, self.budget, self.cost_exponent)

    def too_many_failures(self):
        """The error that stops the search after max_consecutive_failed_trials: one line, what to do."""
        last = self.trials[self.end_order[-1]]
        reason = one_line((last.message or "no message").strip().splitlines()[-1])
        return UserError(
            f"the search stopped: the last {self.max_consecutive_failed_trials} trials failed, the last with "
            f"{reason!r}; the reasons are in {_internals.project_dir(self)}/trial_*/trial.json. Fix the cause "
            "(e.g. lower --learning_rate for a nan loss) and rerun the same command"
        )

    def search_finished(self):
        """True once every trial has ended and none is left to start."""
        if self.ongoing_trials or _internals.retry_queue(self):
            return False
        return len(self.trials) >= self.max_trials or (self._round_finished() and self.search_rounds.is_last())

    def end_trial(self, trial):
        """Record a trial's end, once.

        KerasTuner's lock stays held when a synchronized method raises, which
        would stall a chief serving other workers: the too-many-failures error
        is raised here, after the lock is released, and kept in `failure` for
        the chief to stop on.
        """
        error = self._end_trial_once(trial)
        if error is not None:
            raise error

    @keras_tuner.synchronized
    def _end_trial_once(self, trial):
        trial_id = trial.trial_id
        if trial_id in self.end_order:
            logging.warning("trial %s was already recorded; a late report of it is ignored", trial_id)
            self._drop_ongoing(trial_id)
            return None
        if trial_id in _internals.retry_queue(self):  # its lost worker came back: no need to train it again
            _internals.retry_queue(self).remove(trial_id)
        if trial.status == trial_module.TrialStatus.COMPLETED:
            trial.message = None  # KerasTuner keeps the traceback of a fault the trial was retried for
        try:
            super().end_trial(trial)
        except UserError as error:  # too many consecutive failures: finish what KerasTuner skipped
            _internals.save_trial(self, self.trials[trial_id])
            self._drop_ongoing(trial_id)
            self.failure = error
            self.save()
            return error
        self.save()  # KerasTuner saves before it drops the trial from ongoing_trials: a resume would rerun it
        return None

    def _drop_ongoing(self, trial_id):
        self.ongoing_trials = {t: o for t, o in self.ongoing_trials.items() if o.trial_id != trial_id}

    def take_back(self, tuner_id, trial_id, reason):
        """Take back trial `trial_id` from worker `tuner_id`, which fell silent; False if it has ended already.

        Re-queued, not failed: the controller chose the sample, so its reward is
        worth having, and the trial's per-epoch checkpoint (on a shared work
        directory) lets the next worker continue it. A trial lost
        MAX_TRIAL_LOSSES times is recorded FAILED and gives the controller no
        reward, like any failed trial; too many failures in a row stop the
        search (raised here, outside KerasTuner's lock, as in end_trial).
        """
        taken, failed = self._take_back(tuner_id, trial_id, reason)
        if failed:
            self._check_consecutive_failures()
        return taken

    @keras_tuner.synchronized
    def _take_back(self, tuner_id, trial_id, reason):
        trial = self.ongoing_trials.get(tuner_id)
        if trial is None or trial.trial_id != trial_id:
            return False, False
        del self.ongoing_trials[tuner_id]
        self.tuner_ids.discard(tuner_id)
        self.trial_losses[trial_id] = self.trial_losses.get(trial_id, 0) + 1
        failed = self.trial_losses[trial_id] >= MAX_TRIAL_LOSSES
        if failed:
            trial.status = trial_module.TrialStatus.FAILED
            trial.message = f"lost with its worker {self.trial_losses[trial_id]} times (last {tuner_id}: {reason})"
            self.end_order.append(trial_id)
            _internals.save_trial(self, trial)
            logging.warning("trial %s: %s; recorded FAILED", trial_id, trial.message)
        else:
            _internals.retry_queue(self).append(trial_id)
            logging.warning("trial %s: worker %s %s; the trial is re-queued for another worker",
                            trial_id, tuner_id, reason)
        self.save()
        return True, failed

    def score_trial(self, trial):
        """Score a completed trial and, once per trial, teach the controller its reward."""
        super().score_trial(trial)
        score = trial.score
        if score is None or not np.isfinite(score):
            return  # end_trial marks it invalid; a fake reward would mislead the controller
        self.search_rounds.record(trial.hyperparameters.values, float(self.reward(trial)))

    # --- state: resumable and atomic ------------------------------------------------

    def get_state(self):
        state = super().get_state()
        state["kdas"] = {**self.search_rounds.get_state(), "trial_tuners": self.trial_tuners,
                         "trial_losses": self.trial_losses, "budget": self.budget}
        return state

    def set_state(self, state):
        schema.check_oracle_state(_internals.oracle_file(self), state, rounds=self.rounds,
                                  rebuild=self._rebuild_advice())
        super().set_state(state)
        kdas = state["kdas"]
        if kdas["budget"] != self.budget or kdas["round_backbones"][0] != str(self.backbone):
            raise UserError(
                f"the search in {_internals.project_dir(self)} was made with backbone {kdas['round_backbones'][0]} and budget "
                f"{kdas['budget']}: rerun with the same flags or another --workdir"
            )
        self.search_rounds.set_state(kdas, path=_internals.oracle_file(self), rebuild=self._rebuild_advice())
        self.trial_tuners = kdas.get("trial_tuners", {})
        self.trial_losses = kdas.get("trial_losses", {})

    def _rebuild_advice(self):
        return (f"restore it from a backup, or move {_internals.project_dir(self)} aside and rerun the same "
                "command to search again (the teachers are reused)")

    def reload(self):
        """KerasTuner's reload, after every file it reads has been checked: one line when one is not valid."""
        schema.check_search_files(
            _internals.project_dir(self), _internals.oracle_file(self), self._rebuild_advice(),
            slot_names=slot_names(self.num_stages, self.ops_per_addon),
        )
        try:
            super().reload()
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, RuntimeError) as error:
            raise UserError(
                f"the search state in {_internals.project_dir(self)} cannot be read ({type(error).__name__}: "
                f"{one_line(error)}): restore that directory from a backup, "
                "or move it aside to start the search over"
            ) from None
        # A kill between KerasTuner's save in end_trial and ours leaves an ended trial among the
        # ongoing ones, which reload queues for a retry: it is recorded already.
        queue = _internals.retry_queue(self)
        queue[:] = [t for t in queue if t not in self.end_order]

    def save(self):
        storage.write_json(_internals.oracle_file(self), self.get_state())
