"""--controller=random: uniform over the choices that fit, decision by decision; exact resume."""

import json

import numpy as np
import pytest

from kdas_tf.nas.controller import Controller, ControllerConfig, feasible_choices
from kdas_tf.nas.random_controller import RandomController

D, K = 6, 7
COSTS = np.array([[0, 9, 25, 2, 4, 0, 0]] * D) * np.repeat([1, 4, 16], 2)[:, np.newaxis]
BUDGET = 40


def make(seed=0, costs=COSTS, budget=BUDGET):
    return RandomController(ControllerConfig(num_decisions=D, num_choices=K, seed=seed, kind="random"),
                            costs=costs, budget=budget)


def test_samples_fit_and_each_decision_is_uniform_over_what_still_fits():
    controller = make()
    samples = np.array([controller.sample() for _ in range(3000)])
    assert all(feasible_choices(COSTS, BUDGET, t)[np.arange(D), t].all() for t in samples)
    # the first decision conditions on nothing: every op of stage 1 fits, each about 1/7
    np.testing.assert_allclose(np.bincount(samples[:, 0], minlength=K) / 3000, 1 / K, atol=0.025)
    # after two free ops, decision 3 (stage 2, 4x costs) may take 0, 36, 8, 16: not conv5x5 (100)
    free_start = samples[(samples[:, 0] == 0) & (samples[:, 1] == 0)]
    counts = np.bincount(free_start[:, 2], minlength=K)
    assert counts[2] == 0 and (np.delete(counts, 2) > 0).all()


def test_probabilities_are_uniform_over_the_feasible_choices():
    tokens = make().sample()
    feasible = feasible_choices(COSTS, BUDGET, tokens)
    probs = make().probabilities(tokens)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs[feasible], np.repeat(1 / feasible.sum(axis=1), feasible.sum(axis=1)))
    assert (probs[~feasible] == 0).all()


def test_without_a_budget_every_choice_is_open_and_seeds_differ():
    free = make(costs=None, budget=None)
    assert {free.sample()[5] for _ in range(200)} == set(range(K))
    one, same, other = make(seed=1), make(seed=1), make(seed=2)
    assert [one.sample() for _ in range(5)] == [same.sample() for _ in range(5)] != [other.sample() for _ in range(5)]


def test_state_round_trips_through_json_and_the_next_samples_match():
    original = make(seed=3)
    for _ in range(7):
        original.sample()
    restored = make(seed=4)
    restored.set_state(json.loads(json.dumps(original.get_state())))
    assert [restored.sample() for _ in range(10)] == [original.sample() for _ in range(10)]


def test_a_learning_controllers_state_is_refused():
    lstm = Controller(ControllerConfig(num_decisions=D, num_choices=K))
    with pytest.raises(ValueError, match="another --controller"):
        make().set_state(lstm.get_state())
