"""KDASOracle with a stand-in for training: budget, repeats, rounds, failures, rewards and resumable state.

The stand-in tuner scores an architecture by a fixed formula instead of
training it, so these tests exercise exactly the oracle's decisions.
"""

import json

import keras_tuner
import pytest
from keras_tuner.engine import trial as trial_module

from kdas_tf import _internals, models
from kdas_tf.errors import UserError
from kdas_tf.models.mac_count import count_macs
from kdas_tf.nas.budget import analytic_cost
from kdas_tf.nas.controller import ControllerConfig
from kdas_tf.nas.controller_config import soft_reward
from kdas_tf.nas.oracle import KDASOracle
from kdas_tf.recorded import RecordedOracle
from kdas_tf.reporting import results
from kdas_tf.nas.tuner import KDASTuner

INPUT = dict(num_classes=10, input_shape=(8, 8, 1))
BACKBONE = models.count_parameters("resnet8", **INPUT)


def conv_share(arch):
    """A made-up reward: the share of conv3x3 among the newest module's ops."""
    ops = [op for stage in arch.addons for op in stage[-1]]
    return ops.count("conv3x3") / len(ops)


class FormulaTuner(KDASTuner):
    """Records what it is asked to train and scores it without training."""

    def __init__(self, oracle, directory, fail=(), **kwargs):
        self.trained = []
        self.fail = set(fail)
        super().__init__(oracle, dataset=None, config=None, strategy=None, directory=directory,
                         project_name="search", **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        arch = models.Architecture.parse(trial.hyperparameters.values["architecture"])
        self.trained.append(arch)
        if trial.trial_id in self.fail:  # as KDASTuner fails a trial whose loss turned NaN: at once
            raise keras_tuner.errors.FailedTrialError("loss became nan")
        return {"val_top1": conv_share(arch)}


def make_oracle(budget=None, **kwargs):
    settings = dict(backbone="resnet8", budget=budget or 3 * BACKBONE, trials_per_round=4, seed=0, **INPUT)
    settings.update(kwargs)
    return KDASOracle(**settings)


def search(tmp_path, **kwargs):
    fail = kwargs.pop("fail", ())
    oracle = make_oracle(**kwargs)
    tuner = FormulaTuner(oracle, str(tmp_path), fail=fail)
    tuner.oracle.verbose = 0
    tuner.search()
    return oracle, tuner


def spy(controller):
    """Record every sample and every (tokens, reward) update of `controller`."""
    samples, updates = [], []
    sample, update = controller.sample, getattr(controller, "update", None)

    def sampled():
        samples.append(sample())
        return samples[-1]

    controller.sample = sampled
    if update:
        controller.update = lambda tokens, reward: updates.append((tokens, reward)) or update(tokens, reward)
    return samples, updates


def test_every_sample_fits_the_budget_and_every_update_carries_a_real_reward(tmp_path):
    # Budget just above the backbone: most conv choices in stages 2 and 3 cannot fit.
    budget = BACKBONE + 12_000
    oracle = make_oracle(budget=budget, trials_per_round=6)
    samples, updates = spy(oracle.controller)
    tuner = FormulaTuner(oracle, str(tmp_path))
    tuner.oracle.verbose = 0
    tuner.search()
    assert len(tuner.trained) == 6
    networks = [models.Architecture("resnet8").with_addons(oracle.search_rounds.stage_ops(t)) for t in samples]
    assert all(models.count_parameters(a, **INPUT) <= budget for a in networks)
    # every update is a trained network's score (or its recorded score, for a repeat): no penalty
    # reward, so the baseline is the moving average of real rewards only
    rewards = [reward for _, reward in updates]
    assert rewards == [oracle.known_scores[str(a.canonical())] for a in
                       (models.Architecture("resnet8").with_addons(oracle.search_rounds.stage_ops(t)) for t, _ in updates)]
    assert oracle.controller.update_count == len(updates) == oracle.trial_updates + oracle.repeat_updates
    baseline, decay = rewards[0], oracle.controller.config.baseline_decay
    for reward in rewards[1:]:
        baseline = decay * baseline + (1 - decay) * reward
    assert oracle.controller.baseline == pytest.approx(baseline, abs=1e-12)


def test_the_budget_binds_through_the_mask_the_controller_samples_under(tmp_path):
    budget = BACKBONE + 12_000
    oracle = make_oracle(budget=budget)
    costs = oracle.addon_costs  # [6 decisions, 7 ops]: conv3x3 at resnet8's stage 3 (64 wide) is 36,992
    assert costs[5, models.ADDON_OPS.index("conv3x3")] > budget - BACKBONE
    assert models.ADDON_OPS.index("conv3x3") not in {oracle.controller.sample()[5] for _ in range(50)}
    over = (0,) * 5 + (models.ADDON_OPS.index("conv3x3"),)
    FormulaTuner(oracle, str(tmp_path))
    oracle.controller.sample = lambda: over  # as if the table and the count disagreed: a bug, not a sample
    with pytest.raises(RuntimeError, match="over the budget"):
        oracle.populate_space("0")


def test_a_budget_below_the_backbone_is_refused_with_advice():
    with pytest.raises(ValueError, match=r"--budget is 0\.050M parameters but the backbone resnet8 alone has 0\.075M.*raise --budget"):
        make_oracle(budget=50_000)


def test_every_trial_is_a_new_network_and_updates_the_controller_once(tmp_path):
    oracle, tuner = search(tmp_path, trials_per_round=6)
    keys = [str(a.canonical()) for a in tuner.trained]
    assert len(keys) == len(set(keys)) == 6
    assert oracle.trial_updates == 6
    assert sorted(oracle.known_scores.values()) == sorted(conv_share(a) for a in tuner.trained)


def test_rounds_grow_the_best_candidate_of_the_previous_round(tmp_path):
    oracle, tuner = search(tmp_path, rounds=2, trials_per_round=3)
    first, second = tuner.trained[:3], tuner.trained[3:]
    best_first = max(first, key=conv_share)
    assert oracle.round_backbones == ["resnet8", str(best_first)]
    for arch in second:
        assert all(len(stage) == 2 for stage in arch.addons)
        assert tuple(stage[:1] for stage in arch.addons) == best_first.addons


class FallingTuner(FormulaTuner):
    """Scores round 0's candidates a whole point above every later one: a later round's best is worse."""

    def run_trial(self, trial, *args, **kwargs):
        score = super().run_trial(trial, *args, **kwargs)["val_top1"]
        return {"val_top1": score + (1.0 if trial.hyperparameters.values["round"] == 0 else 0.0)}


def test_each_round_grows_its_previous_rounds_best_even_when_an_older_round_scored_higher(tmp_path):
    oracle = make_oracle(rounds=3, trials_per_round=3)
    tuner = FallingTuner(oracle, str(tmp_path))
    tuner.oracle.verbose = 0
    tuner.search()
    rounds = [tuner.trained[3 * r:3 * r + 3] for r in range(3)]

    def best(archs, bonus):  # best_trial's rule, computed apart: the highest reward, ties to the smaller network
        return max(archs, key=lambda a: (conv_share(a) + bonus, -models.count_parameters(a, **INPUT)))

    assert oracle.round_backbones == ["resnet8", str(best(rounds[0], 1.0)), str(best(rounds[1], 0.0))]
    assert str(oracle.best_trial().hyperparameters.values["architecture"]) == str(best(rounds[0], 1.0))
    for arch in rounds[2]:
        assert tuple(stage[:2] for stage in arch.addons) == best(rounds[1], 0.0).addons


def test_a_failing_trial_is_recorded_failed_and_teaches_the_controller_nothing(tmp_path):
    oracle, tuner = search(tmp_path, fail={"1"})
    statuses = {t.trial_id: t.status for t in oracle.trials.values()}
    assert statuses["1"] == trial_module.TrialStatus.FAILED
    assert "loss became nan" in oracle.trials["1"].message
    assert sum(s == trial_module.TrialStatus.COMPLETED for s in statuses.values()) == 3
    assert oracle.trial_updates == 3


def test_state_round_trips_and_the_next_sample_is_the_same(tmp_path):
    oracle, _ = search(tmp_path)
    state = json.loads(json.dumps(oracle.get_state()))
    twin = make_oracle()
    _internals.set_project_dir(twin, str(tmp_path), "search")
    for trial in oracle.trials.values():
        twin.trials[trial.trial_id] = trial
    twin.set_state(state)
    assert twin.get_state()["kdas"] == oracle.get_state()["kdas"]
    assert twin.controller.sample() == oracle.controller.sample()


def test_a_search_made_with_another_budget_is_not_resumed(tmp_path):
    search(tmp_path)
    with pytest.raises(ValueError, match="budget.*rerun with the same flags or another --workdir"):
        search(tmp_path, budget=4 * BACKBONE)


def test_controller_choices_must_match_the_search_space():
    with pytest.raises(ValueError, match="num_decisions"):
        make_oracle(controller=ControllerConfig(num_decisions=5, num_choices=7))


def test_an_unreadable_search_state_is_refused_with_advice(tmp_path):
    search(tmp_path)
    state = tmp_path / "search" / "oracle.json"
    state.write_text('{"kdas": ')  # cut off mid-write by something other than us
    with pytest.raises(UserError, match=r"oracle.json is not readable JSON .*move .*search aside and rerun"):
        FormulaTuner(make_oracle(), str(tmp_path))
    assert state.read_text() == '{"kdas": '  # left for the user to restore


def test_a_failed_network_is_not_trained_again_and_gets_no_reward(tmp_path):
    oracle = make_oracle()
    FormulaTuner(oracle, str(tmp_path))  # gives the oracle its project directory
    failed = oracle.create_trial("tuner0")
    copy = trial_module.Trial.from_proto(failed.to_proto())
    copy.status, copy.message = trial_module.TrialStatus.FAILED, "loss became nan"
    oracle.end_trial(copy)
    failed_tokens = oracle.tokens_of(failed.hyperparameters.values)
    other_tokens = tuple(1 if t == 0 else 0 for t in failed_tokens)  # another network: a different op in every slot
    samples = iter([failed_tokens, other_tokens])
    oracle.controller.sample = lambda: next(samples)
    updates = oracle.controller.update_count
    values = oracle.populate_space("1")["values"]
    assert oracle.tokens_of(values) == other_tokens
    assert oracle.controller.update_count == updates  # skipping the failed one taught the controller nothing


def test_a_trial_ended_before_a_kill_is_not_queued_again_on_resume(tmp_path):
    oracle, _ = search(tmp_path)
    # The kill came between KerasTuner's save in end_trial (trial still ongoing) and ours.
    state_file = tmp_path / "search" / "oracle.json"
    state = json.loads(state_file.read_text())
    state["ongoing_trials"] = {"tuner0": oracle.end_order[-1]}
    state_file.write_text(json.dumps(state))
    resumed = make_oracle()
    FormulaTuner(resumed, str(tmp_path))
    assert resumed._retry_queue == [] and resumed.end_order == oracle.end_order


def test_of_equally_rewarded_trials_the_smaller_network_is_best(tmp_path):
    oracle, _ = search(tmp_path)
    completed = [t for t in oracle.trials.values() if t.status == trial_module.TrialStatus.COMPLETED]
    for trial in completed:
        trial.score = 0.5  # every trial ties
    smallest = min(completed, key=lambda t: t.hyperparameters.values["parameters"])
    assert oracle.best_trial() is smallest and oracle.best_trial(0) is smallest


def test_each_kind_of_sample_teaches_the_controller_its_own_reward(tmp_path):
    """Trained: its score; repeated: its recorded score; failed, or a repeat of a failed one: nothing.

    (Over-budget samples cannot come from the masked controller; a forced one raises, tested apart.)"""
    oracle = make_oracle(trials_per_round=3)
    tuner = FormulaTuner(oracle, str(tmp_path), fail={"1"})
    tuner.oracle.verbose = 0
    trained_a, trained_b, trained_c = (1, 1, 0, 0, 0, 0), (1, 0, 0, 0, 0, 0), (1, 1, 1, 0, 0, 0)
    # trial 0: a; trial 1: a again, then b (which fails); trial 2: b again (failed), then c
    samples = iter([trained_a, trained_a, trained_b, trained_b, trained_c])
    oracle.controller.sample = lambda: next(samples)
    taught = []
    update = oracle.controller.update
    oracle.controller.update = lambda tokens, reward: taught.append((tuple(tokens), reward)) or update(tokens, reward)
    tuner.search()

    def score(tokens):
        return conv_share(oracle.backbone.with_addons(oracle.search_rounds.stage_ops(tokens)))

    assert [t.status for t in oracle.trials.values()] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert score(trained_a) == pytest.approx(1 / 3)  # the repeat's reward is not 0 by chance
    assert taught == [(trained_a, pytest.approx(score(trained_a))), (trained_a, pytest.approx(score(trained_a))),
                      (trained_c, pytest.approx(score(trained_c)))]


def test_the_oracle_counts_candidates_with_the_runs_shortcut():
    zero_pad = make_oracle()
    projection = KDASOracle(backbone="resnet8", budget=10**6, trials_per_round=4, seed=0, shortcut="projection",
                            num_classes=10, input_shape=(8, 8, 1))
    arch = models.Architecture.parse("resnet8:conv3x3/skip/sep3x3")
    assert zero_pad.parameters(arch) == models.count_parameters(arch, 10, (8, 8, 1), shortcut="zero_pad")
    assert projection.parameters(arch) == models.count_parameters(arch, 10, (8, 8, 1), shortcut="projection")
    assert projection.parameters(arch) > zero_pad.parameters(arch)  # the 1x1 convs the zero-pad shortcut has not


RANDOM = ControllerConfig(num_decisions=6, num_choices=7, kind="random")


def test_a_random_search_fits_the_budget_records_its_trials_alike_and_teaches_nothing(tmp_path):
    budget = BACKBONE + 12_000
    oracle, tuner = search(tmp_path, budget=budget, controller=RANDOM, trials_per_round=6)
    assert len(tuner.trained) == 6 and all(models.count_parameters(a, **INPUT) <= budget for a in tuner.trained)
    completed = [t for t in oracle.trials.values() if t.status == trial_module.TrialStatus.COMPLETED]
    assert sorted(t.score for t in completed) == sorted(conv_share(a) for a in tuner.trained)
    assert oracle.trial_updates == oracle.repeat_updates == 0
    assert oracle.get_state()["kdas"]["controller"]["format"] == "kdas_tf.nas.random_controller/1"


def test_a_random_search_resumes_with_the_same_next_sample(tmp_path):
    oracle, _ = search(tmp_path, controller=RANDOM)
    twin = make_oracle(controller=RANDOM)
    _internals.set_project_dir(twin, str(tmp_path), "search")
    twin.set_state(json.loads(json.dumps(oracle.get_state())))
    assert [twin.controller.sample() for _ in range(5)] == [oracle.controller.sample() for _ in range(5)]


# --- --cost_exponent: MnasNet's soft objective beside the hard budget ---------------------------------------------


def with_trials(oracle, *trials):
    """`oracle` holding completed made-up trials, each (score, parameters[, macs]) of a network of round 0."""
    for index, (score, parameters, *macs) in enumerate(trials):
        space = oracle.get_space()
        space.values.update(architecture="resnet8", round=0, parameters=parameters, **dict(zip(["macs"], macs)))
        trial = trial_module.Trial(space, trial_id=str(index), status=trial_module.TrialStatus.COMPLETED)
        trial.score = score
        oracle.trials[trial.trial_id] = trial
    return oracle


def test_the_soft_reward_is_the_top1_times_the_trials_cost_over_the_budget_to_the_w():
    """0.9 x (150,000 / 200,000)^-0.07 = 0.9 x exp(0.07 ln 4/3) = 0.91830768967111796 (40-digit decimals); the cost
    is the one the budget counts (here MACs, not the trial's parameters); w = 0 gives the score itself."""
    assert soft_reward(0.9, 150_000, 200_000, -0.07) == pytest.approx(0.91830768967111796, abs=1e-12)
    assert soft_reward(0.9, 150_000, 200_000, 0.0) == 0.9
    budget = 4 * count_macs("resnet8", **INPUT)
    macs = make_oracle(budget=budget, cost=analytic_cost("macs", "resnet8", **INPUT), cost_exponent=-0.07)
    (trial,) = with_trials(macs, (0.9, 10**6, budget * 3 // 4)).trials.values()
    assert macs.reward(trial) == pytest.approx(0.9 * (3 / 4) ** -0.07, abs=1e-12)
    assert trial.score == 0.9  # the trial keeps its validation top-1: reports read it as accuracy


def test_a_cheaper_slightly_less_accurate_network_is_best_under_the_soft_objective_only():
    """A: 90.0% at the budget (200,000 parameters); B: 89.0% at 160,000. w = 0: A (0.900 > 0.890). w = -0.07:
    B, 0.89 x 0.8^-0.07 = 0.9040 > 0.9 x 1^-0.07 = 0.9000: 20% cheaper outweighs one point (it would take 1.6%)."""
    found = {}
    for w in (0.0, -0.07):
        oracle = with_trials(make_oracle(budget=200_000, cost_exponent=w), (0.900, 200_000), (0.890, 160_000))
        recorded = with_trials(RecordedOracle(backbone="resnet8", budget=200_000, seed=0, cost_exponent=w, **INPUT),
                               (0.900, 200_000), (0.890, 160_000))
        found[w] = oracle.best_trial().trial_id
        assert oracle.best_trial(0).trial_id == recorded.get_best_trials(1)[0].trial_id == found[w]
    assert found == {0.0: "0", -0.07: "1"}


def test_the_controller_learns_the_soft_reward_and_with_w_0_exactly_the_top1(tmp_path):
    """w = -0.07: every update's reward is the trial's top-1 x (parameters / M)^-0.07, kept for its repeats;
    w = 0: the top-1 itself, bit for bit, and the found network the best top-1 (ties: the smaller), as before."""
    rewards = {}
    for w in (0.0, -0.07):
        oracle = make_oracle(trials_per_round=6, cost_exponent=w)
        _, updates = spy(oracle.controller)
        tuner = FormulaTuner(oracle, str(tmp_path / str(w)))
        tuner.oracle.verbose = 0
        tuner.search()
        expected = {str(a.canonical()): conv_share(a) * (oracle.parameters(a) / oracle.budget) ** w
                    for a in tuner.trained}
        assert oracle.known_scores == pytest.approx(expected, abs=1e-12)
        assert sorted(t.score for t in oracle.trials.values()) == sorted(conv_share(a) for a in tuner.trained)
        rewards[w] = [reward for _, reward in updates]
        if w == 0.0:
            assert oracle.known_scores == {str(a.canonical()): conv_share(a) for a in tuner.trained}  # exactly
            best = max(tuner.trained, key=lambda a: (conv_share(a), -oracle.parameters(a)))
            assert oracle.best_trial().hyperparameters.values["architecture"] == str(best)
    assert rewards[0.0][0] != rewards[-0.07][0] and rewards[0.0][0] > 0  # the same first sample, another reward


def test_a_cost_exponent_above_0_or_below_minus_1_is_refused():
    for w in (0.07, -1.5, float("nan")):
        with pytest.raises(ValueError, match=r"--cost_exponent=.*give w from -1 to 0 .*would reward larger"):
            make_oracle(cost_exponent=w)


def test_results_list_the_soft_reward_beside_each_trials_top1_and_a_run_without_it_as_before():
    """The trials of results.json keep val_top1 (the score) and, under w != 0, add the reward the search ranked by."""
    summaries = {}
    for w in (0.0, -0.07):
        oracle = with_trials(make_oracle(budget=200_000, cost_exponent=w), (0.900, 200_000), (0.890, 160_000))
        summaries[w] = results.collect(teacher_report={}, oracle=oracle, found=oracle.best_trial(), rows={},
                                       budget=200_000, backbone_parameters=BACKBONE, search_loss="od", exported=None)
    plain, soft = summaries[0.0], summaries[-0.07]
    assert [t["val_top1"] for t in soft["trials"]] == [t["val_top1"] for t in plain["trials"]] == [0.900, 0.890]
    assert [t["reward"] for t in soft["trials"]] == pytest.approx([0.9, 0.89 * 0.8 ** -0.07], abs=1e-12)
    assert soft["found"]["val_top1"] == 0.890 and soft["found"]["reward"] == pytest.approx(0.89 * 0.8 ** -0.07)
    assert soft["cost_exponent"] == -0.07 and "cost / budget" in soft["found"]["rule"]
    assert "cost_exponent" not in plain and not any("reward" in t for t in [plain["found"], *plain["trials"]])
    assert plain["found"]["rule"] == results.FOUND_RULE
