"""The LSTM controller: sampling, REINFORCE update, baseline, entropy bonus, exact state restore."""

import base64
import dataclasses
import io
import json

import numpy as np
import pytest

from kdas_tf.nas.controller import Controller, ControllerConfig, feasible_choices

D, K = 6, 7  # 3 stages x 2 slots, the seven add-on operations
CONV3X3 = 1
# A budget table shaped like the real one: op costs (skip and the pools free) grow 4x per stage.
COSTS = np.array([[0, 9, 25, 2, 4, 0, 0]] * D) * np.repeat([1, 4, 16], 2)[:, np.newaxis]
BUDGET = 40  # stage 3 can take nothing but a free op or one sep3x3


def make(costs=None, budget=None, **overrides):
    return Controller(ControllerConfig(num_decisions=D, num_choices=K, **overrides), costs=costs, budget=budget)


def greedy_path(controller):
    """The argmax path; step i's distribution depends only on tokens[:i], so pad with zeros."""
    tokens = []
    for i in range(D):
        probs = controller.probabilities(tuple(tokens) + (0,) * (D - i))
        tokens.append(int(probs[i].argmax()))
    return tuple(tokens)


def entropy_of(probs):
    return float(-(probs * np.log(probs)).sum())


def npy_b64(array):
    """The state's documented array format, written independently of the module."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def peaked(controller, token=0, logit=3.0):
    """Put a large bias on `token` in every head, through the public state."""
    state = controller.get_state()
    bias = np.zeros(K, np.float32)
    bias[token] = logit
    for i in range(D):
        state["weights"][f"controller_head_{i}/bias"] = npy_b64(bias)
    controller.set_state(state)
    return controller


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_decisions", 0),
        ("num_choices", 0),
        ("num_choices", -3),
        ("units", 0),
        ("num_decisions", 2.5),
    ],
)
def test_config_rejects_sizes_below_one(field, value):
    kwargs = {"num_decisions": D, "num_choices": K, field: value}
    with pytest.raises(ValueError, match=f"{field} must be an integer >= 1"):
        ControllerConfig(**kwargs)


@pytest.mark.parametrize(
    "field, value",
    [
        ("learning_rate", 0.0),
        ("baseline_decay", 1.0),
        ("baseline_decay", -0.1),
        ("entropy_weight", -1e-4),
    ],
)
def test_config_rejects_bad_hyperparameters(field, value):
    with pytest.raises(ValueError, match=field):
        ControllerConfig(num_decisions=D, num_choices=K, **{field: value})


def test_same_seed_same_weights_and_samples_other_seed_differs():
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    assert a.get_state()["weights"] == b.get_state()["weights"]
    assert a.get_state()["weights"] != c.get_state()["weights"]
    samples_a = [a.sample() for _ in range(5)]
    assert samples_a == [b.sample() for _ in range(5)]
    assert samples_a != [c.sample() for _ in range(5)]


def test_sample_log_prob_and_probabilities_agree():
    controller = make()
    tokens = controller.sample()
    assert len(tokens) == D and all(isinstance(t, int) and 0 <= t < K for t in tokens)
    probs = controller.probabilities(tokens)
    assert probs.shape == (D, K)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    expected = np.log(probs[np.arange(D), tokens]).sum()
    assert controller.log_prob(tokens) == pytest.approx(expected, rel=1e-5)


def test_initial_policy_is_close_to_uniform():
    probs = make().probabilities((0,) * D)
    np.testing.assert_allclose(probs, 1.0 / K, atol=0.02)


def test_samples_follow_the_policy():
    controller = peaked(make(seed=1), token=2, logit=2.0)
    first_step = controller.probabilities((0,) * D)[0]  # the first decision conditions on nothing
    counts = np.bincount([controller.sample()[0] for _ in range(2000)], minlength=K)
    # 2000 draws: the standard error of each frequency is at most ~0.011.
    np.testing.assert_allclose(counts / 2000, first_step, atol=0.04)


BAD_TOKENS = [(0,) * (D - 1), (0,) * (D - 1) + (K,), (0,) * (D - 1) + (-1,), (0.5,) * D]


@pytest.mark.parametrize("tokens", BAD_TOKENS)
def test_invalid_tokens_raise(tokens):
    controller = make()
    with pytest.raises(ValueError, match="num_decisions=6 integers in \\[0, num_choices=7\\)"):
        controller.log_prob(tokens)
    with pytest.raises(ValueError, match="num_decisions=6"):
        controller.update(tokens, 1.0)


def test_at_the_defaults_two_points_per_slot_are_learnt_within_a_searchs_100_trials():
    # tools/controller_learning.py's reward: a 10-epoch accuracy that gains two points for each
    # conv3x3, with the noise of a short training. 3.5e-4 left P(conv3x3) at 0.146 after 100
    # updates; the defaults reach 0.79-0.93 over seeds (docs/controller.md).
    controller = make(seed=0)
    noise = np.random.default_rng(1000)
    all_conv = (CONV3X3,) * D
    assert controller.probabilities(all_conv)[:, CONV3X3].mean() < 0.16
    for _ in range(100):
        tokens = controller.sample()
        controller.update(tokens, 0.60 + 0.02 * tokens.count(CONV3X3) + noise.normal(0.0, 0.015))
    assert controller.probabilities(all_conv)[:, CONV3X3].mean() > 0.5  # P(conv3x3) at each decision, mean
    assert greedy_path(controller) == all_conv
    assert controller.update_count == 100


def test_baseline_is_a_moving_average_and_advantage_uses_the_previous_one():
    controller = make(baseline_decay=0.9)
    assert controller.baseline is None
    tokens = (1,) * D
    rewards = [0.5, 1.0, 0.2]
    # By hand: b1 = r1 (advantage 0); then advantage = r - b_prev, b = 0.9 b_prev + 0.1 r.
    expected = [(0.5, 0.0), (0.55, 0.5), (0.515, -0.35)]
    for reward, (baseline, advantage) in zip(rewards, expected):
        out = controller.update(tokens, reward)
        assert out["baseline"] == pytest.approx(baseline, abs=1e-12)
        assert out["advantage"] == pytest.approx(advantage, abs=1e-12)
    assert controller.baseline == pytest.approx(0.515, abs=1e-12)
    assert controller.update_count == 3


def test_update_reports_the_pre_update_loss_terms():
    controller = make(entropy_weight=0.1, learning_rate=0.01)
    tokens = controller.sample()
    controller.update(tokens, 0.3)  # initialises the baseline
    log_prob, probs = controller.log_prob(tokens), controller.probabilities(tokens)
    out = controller.update(tokens, 0.8)
    assert out["advantage"] == pytest.approx(0.5)
    assert out["log_prob"] == pytest.approx(log_prob, rel=1e-5)
    assert out["entropy"] == pytest.approx(entropy_of(probs), rel=1e-5)
    assert out["loss"] == pytest.approx(-0.5 * log_prob - 0.1 * out["entropy"], rel=1e-5)
    assert set(out) == {"loss", "baseline", "advantage", "entropy", "log_prob"}


@pytest.mark.parametrize("reward, direction", [(1.0, +1), (-1.0, -1)])
def test_advantage_sign_moves_log_prob_of_the_trained_tokens(reward, direction):
    controller = make(entropy_weight=0.0, learning_rate=0.01)
    tokens = (3, 1, 4, 1, 5, 2)
    controller.update(tokens, 0.0)  # baseline 0, so the next advantage is the reward
    before = controller.log_prob(tokens)
    controller.update(tokens, reward)
    assert direction * (controller.log_prob(tokens) - before) > 0.05


def test_entropy_bonus_moves_the_policy_toward_uniform():
    tokens = (0,) * D
    # Reward 0 every time: the baseline stays exactly 0, so every advantage is 0
    # and only the entropy term can move the weights.
    strong = peaked(make(entropy_weight=1.0, learning_rate=0.05))
    start = strong.probabilities(tokens)
    for _ in range(30):
        assert strong.update(tokens, 0.0)["advantage"] == 0.0
    end = strong.probabilities(tokens)
    assert entropy_of(end) > entropy_of(start) + 0.5 * (D * np.log(K) - entropy_of(start))
    assert end[:, 0].max() < start[:, 0].min()

    none = peaked(make(entropy_weight=0.0, learning_rate=0.05))
    weights = none.get_state()["weights"]
    for _ in range(5):
        none.update(tokens, 0.0)
    assert none.get_state()["weights"] == weights


def test_state_round_trips_through_json_exactly():
    original = make(learning_rate=0.01, seed=5)
    for _ in range(4):
        tokens = original.sample()
        original.update(tokens, tokens.count(CONV3X3) / D)
    state = json.loads(json.dumps(original.get_state()))

    # Another seed: everything that matters must come from the state.
    restored = make(learning_rate=0.01, seed=6)
    restored.set_state(state)
    assert restored.update_count == original.update_count == 4
    assert restored.baseline == original.baseline
    assert restored.get_state() == original.get_state()

    samples = [original.sample() for _ in range(3)]
    assert [restored.sample() for _ in range(3)] == samples
    assert restored.update(samples[0], 0.7) == original.update(samples[0], 0.7)
    after = original.get_state()
    assert restored.get_state()["weights"] == after["weights"]
    assert restored.get_state()["optimizer"] == after["optimizer"]
    assert restored.sample() == original.sample()


def test_state_before_any_update_round_trips():
    original = make(seed=2)
    state = json.loads(json.dumps(original.get_state()))
    assert state["baseline"] is None and state["update_count"] == 0
    restored = make(seed=9)
    restored.set_state(state)
    assert restored.sample() == original.sample()
    assert restored.update((1,) * D, 0.4) == original.update((1,) * D, 0.4)


def test_set_state_rejects_a_state_of_another_shape_and_leaves_the_controller_unchanged():
    other = Controller(ControllerConfig(num_decisions=D, num_choices=K - 2))
    controller = make()
    before = controller.get_state()
    with pytest.raises(ValueError, match="num_choices"):
        controller.set_state(other.get_state())
    assert controller.get_state() == before


def cost_of(tokens):
    return int(COSTS[np.arange(D), tokens].sum())


def test_under_a_budget_every_sample_fits_and_follows_the_mask():
    controller = make(seed=1, costs=COSTS, budget=BUDGET)
    samples = [controller.sample() for _ in range(300)]
    assert max(cost_of(t) for t in samples) <= BUDGET
    for tokens in samples:  # every token was feasible given the ones before it
        assert feasible_choices(COSTS, BUDGET, tokens)[np.arange(D), tokens].all()
    # the mask removes only what cannot fit: stage 1 still takes every op, stage 3 its one paid op
    assert {t[0] for t in samples} == set(range(K))
    assert {t[5] for t in samples} == {0, 3, 5, 6}


def test_the_feasible_set_is_what_still_fits_with_every_later_decision_at_its_cheapest():
    cheap = np.array([[0, 5], [1, 2], [0, 4]])  # decision 2 costs at least 1
    assert feasible_choices(cheap, 6, (1, 0, 0)).tolist() == [[True, True], [True, False], [True, False]]
    assert feasible_choices(cheap, 6, (0, 1, 0)).tolist() == [[True, True], [True, True], [True, True]]


def test_log_prob_and_probabilities_are_the_masked_policys():
    free, masked = make(seed=2), make(seed=2, costs=COSTS, budget=BUDGET)
    tokens = masked.sample()
    feasible = feasible_choices(COSTS, BUDGET, tokens)
    unmasked = free.probabilities(tokens)
    expected = np.where(feasible, unmasked, 0) / np.where(feasible, unmasked, 0).sum(axis=1, keepdims=True)
    probs = masked.probabilities(tokens)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
    assert (probs[~feasible] == 0).all()
    assert masked.log_prob(tokens) == pytest.approx(np.log(probs[np.arange(D), tokens]).sum(), rel=1e-5)
    out = masked.update(tokens, 0.5)
    assert out["log_prob"] == pytest.approx(np.log(probs[np.arange(D), tokens]).sum(), rel=1e-5)
    assert np.isfinite(out["entropy"]) and np.isfinite(out["loss"])


def test_an_infeasible_choice_gets_no_gradient_and_tokens_over_the_budget_are_refused():
    controller = make(seed=3, costs=COSTS, budget=BUDGET, learning_rate=0.05, entropy_weight=0.1)
    head = f"controller_head_{D - 1}/bias"
    before = controller.get_state()["weights"][head]
    for step in range(10):
        controller.update(controller.sample(), float(step % 3))
    bias = np.load(io.BytesIO(base64.b64decode(controller.get_state()["weights"][head])))
    initial = np.load(io.BytesIO(base64.b64decode(before)))
    never_feasible = [1, 2, 4]  # conv3x3, conv5x5, sep5x5 in stage 3: over the budget on their own
    np.testing.assert_array_equal(bias[never_feasible], initial[never_feasible])
    assert not np.array_equal(bias[[0, 5, 6]], initial[[0, 5, 6]])  # always feasible: they learn
    with pytest.raises(ValueError, match="over the budget 40"):
        controller.update((0, 0, 0, 0, 0, 1), 1.0)


def test_the_inverse_cdf_never_lands_on_a_masked_choice_at_its_edges():
    # Token 0 and the last token masked; u = 0 and u = 1 - tiny (1.0 in float32) are the edges.
    costs = np.array([[9, 0, 0, 0, 0, 0, 9]] * D)
    controller = make(costs=costs, budget=0)

    class Edges:
        def random(self, n):
            return np.array([0.0, 1 - 1e-12] * (n // 2))

    controller._rng = Edges()
    assert controller.sample() == (1, 5) * (D // 2)


def test_a_budget_nothing_fits_in_is_refused():
    with pytest.raises(ValueError, match="below the cheapest sample's cost 6"):
        make(costs=np.ones((D, K), int), budget=5)
    with pytest.raises(ValueError, match="costs must be non-negative integers of shape \\(6, 7\\)"):
        make(costs=np.ones((D, K - 1), int), budget=5)


def test_a_controller_under_a_budget_resumes_exactly():
    original = make(seed=5, costs=COSTS, budget=BUDGET, learning_rate=0.01)
    for _ in range(4):
        tokens = original.sample()
        original.update(tokens, tokens.count(3) / D)
    restored = make(seed=6, costs=COSTS, budget=BUDGET, learning_rate=0.01)
    restored.set_state(json.loads(json.dumps(original.get_state())))
    assert [restored.sample() for _ in range(5)] == [original.sample() for _ in range(5)]


def test_config_is_a_frozen_value():
    config = ControllerConfig(num_decisions=D, num_choices=K)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.units = 8
