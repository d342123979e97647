"""Rounds without KerasTuner: each round's backbone and budget left, repeats, a round that converges, and a
controller that learns across the rounds of a whole search."""

import dataclasses
import functools

import numpy as np
import pytest

from kdas_tf import models
from kdas_tf.nas.budget import addon_costs
from kdas_tf.nas.random_controller import RandomController
from kdas_tf.nas.rounds import Rounds, canonical_key, controller_config, slot_names

INPUT = dict(num_classes=10, input_shape=(8, 8, 1))
BACKBONE = models.count_parameters("resnet8", **INPUT)


def make_rounds(budget, **kwargs):
    backbone = models.Architecture("resnet8")
    settings = dict(
        backbone=backbone, budget=budget, costs=addon_costs(backbone, 2, **INPUT),
        controller_config=controller_config(None, num_stages=3, ops_per_addon=2, seed=0),
        parameters=functools.partial(models.count_parameters, **INPUT), rounds=3, trials_per_round=4,
        ops_per_addon=2, max_samples_per_trial=5,
    )
    return Rounds(**{**settings, **kwargs})


class OneSample:
    """A controller that samples the same tokens every time and records the rewards it is taught."""

    def __init__(self, tokens):
        self.tokens, self.taught = tokens, []

    def sample(self):
        return self.tokens

    def update(self, tokens, reward):
        self.taught.append((tuple(tokens), reward))
        return {"baseline": reward, "entropy": 0.0, "loss": 0.0, "advantage": 0.0}


def test_each_round_builds_on_the_last_ones_best_and_samples_within_the_budget_left_after_it():
    budget = BACKBONE + 12_000
    rounds = make_rounds(budget)
    rounds.start_next(None)  # no trial of round 1 completed: round 2 searches the same backbone again
    assert rounds.round_backbones == ["resnet8", "resnet8"]
    # conv3x3 in stages 1 and 2 adds 11,616 of the 12,000: only the parameter-free ops still fit
    best = models.Architecture("resnet8").with_addons([["conv3x3", "skip"], ["conv3x3", "skip"], ["skip", "skip"]])
    rounds.start_next(str(best))
    assert (rounds.round, rounds.backbone()) == (2, best)
    for _ in range(20):
        values = rounds.propose(taken=set())
        arch = models.Architecture.parse(values["architecture"])
        assert values["round"] == 2 and values["parameters"] <= budget
        assert [stage[:-1] for stage in arch.addons] == list(best.addons)  # best's add-ons, then the new module
        assert {op for stage in arch.addons for op in stage[-1]} <= {"skip", "maxpool3x3", "avgpool3x3"}


def test_a_trained_sample_teaches_its_reward_on_every_repeat_until_the_round_converges():
    rounds = make_rounds(3 * BACKBONE)
    rounds.controller = OneSample((1, 0, 0, 0, 0, 0))
    values = rounds.propose(taken=set())
    assert rounds.tokens_of(values) == (1, 0, 0, 0, 0, 0)
    rounds.record(values, 0.25)
    assert rounds.propose(taken=set()) is None  # 5 repeats in a row: converged
    assert rounds.round_converged and rounds.finished([])
    assert rounds.controller.taught == [((1, 0, 0, 0, 0, 0), 0.25)] * 6  # the trial, then each repeat
    assert (rounds.trial_updates, rounds.repeat_updates, rounds.repeated_samples) == (1, 5, 5)


def test_a_sample_in_training_is_drawn_again_without_a_reward():
    rounds = make_rounds(3 * BACKBONE)
    rounds.controller = OneSample((1, 0, 0, 0, 0, 0))
    in_training = canonical_key(rounds.propose(taken=set()))
    assert rounds.propose(taken={in_training}) is None
    assert rounds.controller.taught == [] and rounds.repeated_samples == 5 and rounds.repeat_updates == 0


BEST = models.ADDON_OPS.index("conv3x3")


def p_best(controller, num_decisions=6):
    """The policy's probability of the best op at each decision along the all-best path, averaged: 1/7 uniform."""
    return float(controller.probabilities((BEST,) * num_decisions)[:, BEST].mean())


def search_on_a_synthetic_reward(num_rounds, trials_per_round, *, kind="lstm", seed=0):
    """A whole search driven through Rounds, as the oracle drives it, on docs/controller.md's synthetic reward:
    0.60 plus two points for every conv3x3 of the newest module, plus noise of std 0.015 (a short training's
    spread). The budget does not bind. Returns P(best op) at the end of each round."""
    config = controller_config(None, num_stages=3, ops_per_addon=2, seed=seed)
    rounds = make_rounds(100 * BACKBONE, rounds=num_rounds, trials_per_round=trials_per_round,
                         max_samples_per_trial=200, controller_config=dataclasses.replace(config, kind=kind))
    noise = np.random.default_rng(1000 + seed)
    curve = []
    for round_index in range(num_rounds):
        trained = []
        while len(trained) < trials_per_round and (values := rounds.propose(set())) is not None:
            newest = [values[name] for name in slot_names(3, 2)]
            reward = 0.60 + 0.02 * newest.count("conv3x3") + noise.normal(0.0, 0.015)
            rounds.record(values, reward)
            trained.append((reward, values["architecture"]))
        curve.append(p_best(rounds.controller))
        if round_index + 1 < num_rounds:
            rounds.start_next(max(trained)[1])
    return curve


@pytest.mark.parametrize("num_rounds, trials_per_round", [(3, 33), (4, 25)])  # Table 2's files; WRN-40-1's
def test_the_lstm_learns_across_the_rounds_of_the_paper_flagfiles(num_rounds, trials_per_round):
    # A fresh controller each round ends every search of 5 seeds at 0.15-0.22 (docs/controller.md); carried, the
    # mean passes 0.5 and no seed stays near uniform (at 4 x 25 one seed of five locks one decision of six on
    # another op: 0.500).
    last = [search_on_a_synthetic_reward(num_rounds, trials_per_round, seed=seed)[-1] for seed in range(3)]
    assert np.mean(last) > 0.5, last
    assert min(last) > 0.4, last


def test_the_random_controller_stays_uniform_and_draws_each_round_from_its_own_seed():
    curve = search_on_a_synthetic_reward(3, 10, kind="random")
    assert curve == pytest.approx([1 / len(models.ADDON_OPS)] * 3)
    config = dataclasses.replace(controller_config(None, num_stages=3, ops_per_addon=2, seed=0), kind="random")
    rounds = make_rounds(100 * BACKBONE, controller_config=config)
    first = rounds.controller
    rounds.start_next(None)
    assert rounds.controller is not first
    assert rounds.controller.get_state() == RandomController(
        dataclasses.replace(config, seed=1), costs=rounds.costs, budget=rounds.budget - BACKBONE).get_state()
