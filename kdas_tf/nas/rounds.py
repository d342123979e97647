"""The search's rounds: each round's backbone, its controller, and what the controller learns.

Rounds: a round searches one more add-on module per stage on its backbone.
After `trials_per_round` trials (or once max_samples_per_trial samples in a
row were networks trained or taken already: the round has converged) the best
candidate of the round becomes the backbone (its add-ons frozen into it) and
the controller searches one more module per stage. The LSTM learns across the
whole search: every round makes the same decisions (one more module after each
stage), so the next round keeps its weights, Adam's moments and its baseline,
and only the budget left after the new backbone changes. A fresh controller
per round would get trials_per_round updates each (25-33 in the paper's
flagfiles), too few to learn from (docs/controller.md). `_controller_for`
makes each round's controller: the one place that decides what it starts from.

Budget: the controller samples only what fits the budget M (in parameters, MACs
or predicted latency: --budget_metric). It gets what each op adds in each slot
(an AdditiveCost's table) and the budget left after the round's backbone, and
masks every choice that could no longer fit (controller.feasible_choices). Why not a reward-0 penalty for samples over M:
each one pulled the moving-average baseline down, so the next trained
candidate's advantage was +0.3 to +0.6 against real differences of 0.01-0.05,
and Adam's moments filled with penalty gradients. Under the mask every update
carries a real reward.
A sample whose network was already trained is not trained again; it teaches
the controller its recorded score (real information, no retraining) and the
controller is asked again, within the same trial slot. Trained trials and
repeats are counted apart (`trial_updates`, `repeat_updates`).
With --controller=random (kdas_tf.nas.random_controller) the samples are uniform
under the same mask and nothing learns: no controller updates at all.

Nothing here knows KerasTuner: the oracle (kdas_tf.nas.oracle) makes trials of
the values `propose` returns, counts a round's trials, picks its best, and hands
each trained trial's values and reward to `record`.
"""

import dataclasses

import tensorflow as tf
from absl import logging

from kdas_tf import models
from kdas_tf.errors import UserError, one_line
from kdas_tf.models.costs import COST_KEYS
from kdas_tf.nas.controller import Controller, ControllerConfig
from kdas_tf.nas.random_controller import RandomController


def slot_name(stage, slot):
    return f"stage{stage + 1}_op{slot + 1}"


def slot_names(num_stages, ops_per_addon):
    """The name of every decision, in the controller's order: stage by stage, slot by slot."""
    return [slot_name(stage, slot) for stage in range(num_stages) for slot in range(ops_per_addon)]


def canonical_key(values):
    """A trial's network (from its values) with skips dropped: equal networks get equal keys."""
    return str(models.Architecture.parse(values["architecture"]).canonical())


def controller_config(given, *, num_stages, ops_per_addon, seed):
    """The controller's config: `given` (None: the defaults with `seed`), checked against the search space."""
    config = given or ControllerConfig(
        num_decisions=num_stages * ops_per_addon, num_choices=len(models.ADDON_OPS), seed=seed
    )
    expected = (num_stages * ops_per_addon, len(models.ADDON_OPS))
    if (config.num_decisions, config.num_choices) != expected:
        raise ValueError(
            f"controller num_decisions/num_choices {(config.num_decisions, config.num_choices)} do not fit the "
            f"search space: {num_stages} stages x {ops_per_addon} ops per add-on from "
            f"{len(models.ADDON_OPS)} operations"
        )
    return config


class Rounds:
    """Which round runs, on which backbone, with which controller; the controller's REINFORCE updates."""

    def __init__(self, *, backbone, budget, costs, controller_config, parameters, rounds, trials_per_round,
                 ops_per_addon, max_samples_per_trial, logdir=None, cost=None, metric="parameters"):
        """costs [D, K]: what each op adds in each slot (AdditiveCost.table); parameters(arch): its size;
        cost(arch): what the budget counts of it (default: its parameters), `metric`'s (kdas_tf.models.costs)."""
        backbone = models.as_architecture(backbone)
        self.budget = budget
        self.costs = costs
        self.controller_config = controller_config
        self.parameters = parameters
        self.cost = cost or parameters
        self.metric = metric
        self.rounds = rounds
        self.trials_per_round = trials_per_round
        self.ops_per_addon = ops_per_addon
        self.max_samples_per_trial = max_samples_per_trial
        self.num_stages = backbone.num_stages
        self.round = 0
        self.round_converged = False
        self.round_backbones = [str(backbone)]
        self.controller = self._controller_for(0)
        self.known_scores = {}  # canonical architecture -> reward it earned
        self.trial_updates = 0
        self.repeated_samples = 0
        self.repeat_updates = 0
        self._logdir = logdir
        self._writer = None  # opened at the first update: a run refused while it reads the state writes no log

    def backbone(self):
        """The running round's backbone."""
        return models.Architecture.parse(self.round_backbones[self.round])

    def _controller_for(self, round_index):
        """The round's controller, under the budget left after the round's backbone: round 0 makes it; later
        rounds carry the LSTM on (its weights, optimizer state and baseline). --controller=random draws each
        round from a generator of its own seed, as it always has: it has nothing to carry."""
        left = self.budget - self.cost(self.backbone())
        if round_index and self.controller_config.kind != "random":
            self.controller.set_budget(left)
            return self.controller
        config = dataclasses.replace(self.controller_config, seed=self.controller_config.seed + round_index)
        kind = RandomController if config.kind == "random" else Controller
        return kind(config, costs=self.costs, budget=left)

    def stage_ops(self, tokens):
        """The add-on op sequence of each stage that controller tokens stand for."""
        ops = [models.ADDON_OPS[t] for t in tokens]
        return [ops[s * self.ops_per_addon:(s + 1) * self.ops_per_addon] for s in range(self.num_stages)]

    def tokens_of(self, values):
        """The controller tokens a trial's hyperparameter values stand for."""
        return tuple(models.ADDON_OPS.index(values[name]) for name in slot_names(self.num_stages, self.ops_per_addon))

    def finished(self, trial_values):
        """Whether the running round is done: it converged, or trials_per_round of the trials (values) are its."""
        started = sum(1 for values in trial_values if values.get("round") == self.round)
        return self.round_converged or started >= self.trials_per_round

    def is_last(self):
        """Whether the running round is the search's last."""
        return self.round + 1 >= self.rounds

    def start_next(self, best_architecture):
        """The next round, on the last round's best network (None: none completed, so the same backbone)."""
        self.round_backbones.append(self.round_backbones[-1] if best_architecture is None else best_architecture)
        self.round += 1
        self.round_converged = False
        self.controller = self._controller_for(self.round)
        logging.info("round %d starts from backbone %s", self.round, self.round_backbones[-1])

    def propose(self, taken):
        """The next network to train as a trial's values, or None: the round has converged.

        taken: canonical architectures not to train (in training, or failed). A sample already trained teaches
        the controller its recorded score; a trained or taken sample is drawn again, and max_samples_per_trial
        of them in a row mean the round has converged.
        """
        backbone = self.backbone()
        for _ in range(self.max_samples_per_trial):
            tokens = self.controller.sample()
            stage_ops = self.stage_ops(tokens)
            arch = backbone.with_addons(stage_ops)
            key = str(arch.canonical())
            cost = self.cost(arch)
            if cost > self.budget:
                raise RuntimeError(f"the controller sampled {arch} ({cost} {self.metric}) over the budget "
                                   f"{self.budget}: the cost table disagrees with the network's count")
            if key in self.known_scores or key in taken:
                self.repeated_samples += 1
                if key in self.known_scores:
                    self._update_controller(tokens, self.known_scores[key], kind="repeat")
                continue
            values = {slot_name(s, l): op for s, ops in enumerate(stage_ops) for l, op in enumerate(ops)}
            values.update(architecture=str(arch), round=self.round, parameters=self.parameters(arch))
            if self.metric != "parameters":
                values[COST_KEYS[self.metric]] = cost
            return values
        logging.info("round %d: %d samples in a row were known; the round has converged",
                     self.round, self.max_samples_per_trial)
        self.round_converged = True
        return None

    def record(self, values, reward):
        """A trained trial's reward, kept for its repeats; taught to the controller if the trial's round is running."""
        self.known_scores[canonical_key(values)] = reward
        if values.get("round") == self.round:
            self._update_controller(self.tokens_of(values), reward, kind="trial")

    def _update_controller(self, tokens, reward, *, kind):
        """One REINFORCE step from a trained trial's or a repeat's reward; none for --controller=random."""
        if self.controller_config.kind == "random":
            return None
        if kind == "trial":
            self.trial_updates += 1
        else:
            self.repeat_updates += 1
        stats = self.controller.update(tokens, reward)
        if self._logdir:
            self._writer = self._writer or tf.summary.create_file_writer(self._logdir)
            step = self.controller.update_count  # one policy, carried across the rounds
            probabilities = self.controller.probabilities(tokens)
            with self._writer.as_default(step=step):
                tf.summary.scalar("controller/reward", reward)
                for name in ("baseline", "entropy", "loss", "advantage"):
                    tf.summary.scalar(f"controller/{name}", stats[name])
                tf.summary.scalar(f"controller/samples_{kind}", 1.0)
                for decision, row in enumerate(probabilities):
                    stage, slot = divmod(decision, self.ops_per_addon)
                    for op, p in zip(models.ADDON_OPS, row):
                        tf.summary.scalar(f"choice_probability/{slot_name(stage, slot)}/{op}", float(p))
            self._writer.flush()
        return stats

    # --- state: oracle.json's "kdas" entry holds it, in this order --------------------

    def get_state(self):
        return {
            "round": self.round,
            "round_converged": self.round_converged,
            "round_backbones": self.round_backbones,
            "controller": self.controller.get_state(),
            "known_scores": self.known_scores,
            "trial_updates": self.trial_updates,
            "repeated_samples": self.repeated_samples,
            "repeat_updates": self.repeat_updates,
        }

    def set_state(self, state, *, path, rebuild):
        """Resume from get_state's `state`, read from file `path`; `rebuild` says what to do when it does not fit."""
        self.round = state["round"]
        self.round_converged = state["round_converged"]
        self.round_backbones = state["round_backbones"]
        self.controller = self._controller_for(self.round)
        try:
            self.controller.set_state(state["controller"])
        except (ValueError, TypeError, KeyError) as error:  # weights of another shape, an unreadable generator state
            raise UserError(f"{path} is invalid: kdas.controller does not fit this search's "
                            f"controller ({one_line(error)}); {rebuild}") from None
        self.known_scores = state["known_scores"]
        self.trial_updates = state["trial_updates"]
        self.repeated_samples = state["repeated_samples"]
        self.repeat_updates = state["repeat_updates"]
