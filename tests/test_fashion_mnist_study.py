"""The Fashion-MNIST study (tools/fashion_mnist_study*.py): the pre-registered rules applied to made-up runs,
the plan they price, the claims, tables and figures made from kept runs, and the committed study held to them."""

import os
import sys

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, os.path.dirname(os.path.join(ROOT, "tools", "fashion_mnist_study_plan.py")))
import fashion_mnist_study_plan as study  # noqa: E402  (the plan, its rules and its kept files)
import fashion_mnist_study_report as report  # noqa: E402  (the page's tables, the claims, the figures)


def teacher_report(train, member_val, ensemble_val, member_test=0.5, ensemble_test=0.5):
    # The test numbers are there to show the rule never reads them.
    return {"member_train_top1_mean": train, "member_val_top1_mean": member_val, "ensemble_val_top1": ensemble_val,
            "member_test_top1_mean": member_test, "ensemble_test_top1": ensemble_test}


def test_the_largest_validation_gain_among_the_regimes_whose_members_fit():
    reports = {"50k": teacher_report(0.90, 0.88, 0.90),  # the largest gain, but its members do not fit
               "20k": teacher_report(0.96, 0.87, 0.885), "10k": teacher_report(0.97, 0.86, 0.88),
               "4k": teacher_report(0.99, 0.84, 0.85)}
    chosen, why = study.select_regime(reports)
    assert chosen == "10k"
    assert "20k, 10k, 4k" in why and "+2.00 points" in why


def test_no_regime_fits_then_all_compete_and_test_numbers_are_never_read():
    reports = {"50k": teacher_report(0.90, 0.88, 0.90, ensemble_test=0.2),
               "10k": teacher_report(0.88, 0.86, 0.87, ensemble_test=0.99)}
    chosen, why = study.select_regime(reports)
    assert chosen == "50k" and "all compared" in why


def test_a_tie_in_gain_goes_to_the_better_ensemble():
    # gains 1.05 and 1.00
    reports = {"20k": teacher_report(0.96, 0.87, 0.8805), "10k": teacher_report(0.97, 0.875, 0.8850)}
    chosen, why = study.select_regime(reports)
    assert chosen == "10k" and "tied" in why


def test_every_regime_costs_the_same_and_the_plan_prices_it():
    assert {images * epochs for images, epochs in study.REGIMES.values()} == {study.IMAGE_EPOCHS}
    runs = study.regime_runs("/tmp/study_runs")
    assert [run.name for run in runs] == list(study.REGIMES)
    assert len({run.seconds for run in runs}) == 1 and runs[0].seconds == pytest.approx(5 * 207)
    assert all("--train_examples=" in " ".join(run.argv) for run in runs)


@pytest.fixture
def kept(tmp_path, monkeypatch):
    """An empty study folder in place of docs/fashion_mnist/study, and a writer of kept runs into it."""
    monkeypatch.setattr(study, "STUDY", str(tmp_path))

    def keep(stage, name, value):
        study.write_json(os.path.join(str(tmp_path), stage, f"{name}.json"), value)
    return keep


def test_the_claims_are_judged_on_the_kept_runs_test_numbers(kept):
    judge_made_up_runs(kept)


def judge_made_up_runs(kept):
    rng = np.random.default_rng(0)
    study.write_json(os.path.join(study.STUDY, "regime.json"), {"regime": "10k", "train_examples": 10000, "epochs": 10})
    kept("regimes", "10k", {"ensemble_test_top1": 0.87, "member_test_top1": [0.860, 0.861, 0.859, 0.862, 0.858]})
    means = {("resnet8", "ce"): 0.86, ("resnet8", "kd"): 0.85, ("resnet8", "od"): 0.855, ("resnet14", "od"): 0.87}
    for (network, loss), mean in means.items():
        for seed in study.BASELINE_SEEDS:
            kept("baselines", f"{network}_{loss}_seed{seed}", {"test": {"top1": mean + rng.normal(0, 0.001)}})
    for controller, mean in (("lstm", 0.865), ("random", 0.864)):
        for seed in study.SEARCH_SEEDS:
            trainings = [{"test": {"top1": mean + rng.normal(0, 0.002)}} for _ in range(study.FOUND_SEEDS)]
            trials = [{"round": n // 3, "trial_id": f"{n:02d}", "val_top1": float(rng.uniform(0.2, 0.8))}
                      for n in reversed(range(3 * study.ROUNDS))]  # kept in any order
            kept("searches", f"{controller}_{seed}", {"final": {"kdas_od": {"seeds": trainings}}, "trials": trials,
                                                    "found": {"val_top1": 0.8 + rng.normal(0, 0.01)}})
    table = {row["claim"][:2]: row for row in report.claims_table(
        {stage: study.read_kept(stage) for stage in ("regimes", "baselines", "searches")})}
    assert table["1."]["verdict"] == "holds" and table["1."]["a"]["n"] == 1 and table["1."]["b"]["n"] == 5
    assert table["2."]["verdict"] == "reversed"  # KD below CE by 1 point, spread 0.1
    assert table["3."]["verdict"] == "holds"
    assert table["4."]["verdict"] == "holds" and table["4."]["a"]["n"] == 9
    assert table["5."]["verdict"] == "reversed"
    assert table["6a"]["a"]["n"] == table["6a"]["b"]["n"] == 9 and table["6b"]["a"]["n"] == 3
    ce = [study.read_kept("baselines")[f"resnet8_ce_seed{seed}"]["test"]["top1"] for seed in study.BASELINE_SEEDS]
    assert table["2."]["b"]["mean"] == pytest.approx(np.mean(ce))
    markdown = report.claims_markdown(list(table.values()))
    low, high = table["2."]["difference_interval"]
    assert "| 2. KD beats CE, plain ResNet-8 | " in markdown and high < 0  # reversed: the interval is below 0
    assert f"| {100 * table['2.']['difference']:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}] | " in markdown
    return {stage: study.read_kept(stage) for stage in ("baselines", "searches")}


def test_a_missing_run_leaves_the_claims_unjudged(kept):
    study.write_json(os.path.join(study.STUDY, "regime.json"), {"regime": "10k", "train_examples": 10000, "epochs": 10})
    kept("regimes", "10k", {"ensemble_test_top1": 0.87, "member_test_top1": [0.86] * 5})
    assert report.claims_table({stage: study.read_kept(stage) for stage in study.STAGES}) is None


def test_the_search_takes_the_shorter_training_whose_rewards_rank_like_the_final_accuracy(kept):
    decision = {"regime": "10k", "train_examples": 10000, "epochs": 10}
    assert study.reward_lengths(10) == [1, 3] and study.reward_lengths(2) == [1] and study.reward_lengths(25) == [2, 8]
    final = np.linspace(0.80, 0.86, study.REWARD_CANDIDATES)
    shuffled = np.random.default_rng(0).permutation(final)  # 1 epoch: unrelated to the final ranking
    for index in range(study.REWARD_CANDIDATES):
        for length, value in ((1, shuffled[index]), (3, final[index] - 0.1), (10, final[index])):
            kept("reward", f"e{length}_c{index}", {"val": {"top1": float(value)}})
    result = study.search_decision(decision)
    assert result["spearman"]["3"] == pytest.approx(1.0) and result["spearman"]["1"] < study.RANK_THRESHOLD
    assert result["search_epochs"] == 3
    per_search = study.ROUNDS * result["trials_per_round"] * study.seconds("candidate_od", 10000, 3)
    assert 6 * per_search <= study.SEARCH_HOURS * 3600 or result["trials_per_round"] == study.TRIAL_CHOICES[-1]


def test_the_reward_candidates_are_distinct_draws_under_the_budget_and_kept(kept):
    drawn = study.reward_candidates()
    assert len(set(drawn)) == study.REWARD_CANDIDATES
    from kdas_tf import models
    assert all(models.count_parameters(models.Architecture.parse(arch), 10, (28, 28, 1)) <= 180_000 for arch in drawn)
    assert study.reward_candidates() == drawn == study.read_json_file("reward_candidates.json")


def test_the_figures_show_every_row_and_every_search(kept, tmp_path):
    runs = judge_made_up_runs(kept)
    for stage in ("baselines", "searches"):  # sizes, as the real runs record them
        for name, value in runs[stage].items():
            value.setdefault("parameters", 75_000 if "resnet8" in name else 172_000)
            value.get("final", {}).get("kdas_od", {}).setdefault("parameters", 120_000)
    points = report.draw_figures(runs, str(tmp_path))
    assert len(points) == len(study.BASELINES) + len(study.CONTROLLERS) * len(study.SEARCH_SEEDS)
    assert [len(values) for _, _, values in points[:4]] == [5] * 4 and len(points[-1][2]) == study.FOUND_SEEDS
    for name in ("accuracy_vs_parameters.png", "searches.png", "rewards.png"):
        assert open(tmp_path / name, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    curves = report.reward_curves(runs["searches"])
    assert len(curves) == len(study.CONTROLLERS) * len(study.SEARCH_SEEDS)
    numbers, rewards, starts = curves["random_200"]
    trials = {int(t["trial_id"]): t["val_top1"] for t in runs["searches"]["random_200"]["trials"]}
    assert numbers == sorted(trials) and rewards == [trials[n] for n in numbers] and starts == [0, 3]


COMMITTED = os.path.join(ROOT, "docs", "fashion_mnist", "study")  # the study's kept runs and decisions


def test_the_committed_decisions_follow_from_the_committed_runs():
    """What docs/fashion_mnist.md reports as decided is recomputed from the runs kept beside it: the regime from
    the four regimes' teacher reports, the search's epochs and trials from the reward runs (Spearman's rho to
    1e-12), and, once every run is kept, the claims table (claims.json) from the baselines and searches."""
    kept = {stage: study.read_kept(stage) for stage in study.STAGES}
    assert study.STUDY == COMMITTED and set(kept["regimes"]) == set(study.REGIMES)
    regime = study.read_json_file("regime.json")
    assert study.select_regime({name: kept["regimes"][name] for name in study.REGIMES})[0] == regime["regime"]
    recorded = study.read_json_file("search_epochs.json")
    decided = study.decide_search(kept["reward"], regime)
    assert (decided["search_epochs"], decided["trials_per_round"]) == (recorded["search_epochs"],
                                                                       recorded["trials_per_round"])
    assert decided["spearman"] == pytest.approx(recorded["spearman"], abs=1e-12)
    table = report.claims_table(kept)
    if os.path.exists(os.path.join(COMMITTED, "claims.json")):
        assert table == study.read_json_file("claims.json")
        assert report.search_level_claims(kept) == study.read_json_file("claims_by_search.json")
    else:
        assert table is None  # not every run is kept yet, so nothing may have been judged


def test_the_page_carries_every_table_the_kept_runs_make():
    """docs/fashion_mnist.md's tables are the tool's, from the committed runs, to the digit: a run kept without
    its page updated, or a number typed by hand, fails here."""
    page = open(os.path.join(ROOT, "docs", "fashion_mnist.md")).read()
    tables = report.report({stage: study.read_kept(stage) for stage in study.STAGES})
    assert [title for title, _ in tables][:3] == ["Step 1: the teachers' regimes", "Step 2: the reward's ranking",
                                                  "Step 3: the rows that need no search"]
    for title, markdown in tables:
        assert markdown in page, title
    if os.path.exists(os.path.join(COMMITTED, "claims.json")):  # the README publishes the claims table too
        readme = open(os.path.join(ROOT, "README.md")).read()
        assert report.claims_markdown(report.claims_table({stage: study.read_kept(stage) for stage in study.STAGES})) \
            in readme


def made_up_search(rng, controller, seed, mean):
    trials = [{"round": r, "trial_id": f"{4 * r + i:02d}", "val_top1": float(rng.uniform(0.2, 0.8))}
              for r in range(study.ROUNDS) for i in range(4)]
    best = max(trials, key=lambda trial: trial["val_top1"])
    seeds = [{"test": {"top1": mean + float(rng.normal(0, 0.002))}, "val": {"top1": 0.86}, "parameters": 120_000}
             for _ in range(study.FOUND_SEEDS)]
    return {"trials": trials, "found": dict(best, parameters=120_000), "found_architecture": f"resnet8:{controller}",
            "final": {"kdas_od": {"seeds": seeds, "parameters": 120_000}}, "study": {"seconds": 1800 + seed}}


def test_the_searches_table_shows_each_rounds_rewards_and_the_found_models_trainings(kept):
    rng = np.random.default_rng(1)
    searches = {f"lstm_{seed}": made_up_search(rng, "lstm", seed, 0.86) for seed in study.SEARCH_SEEDS[:2]}
    lines = report.searches_markdown(searches).splitlines()
    assert len(lines) == 2 + 2  # header, rule, one line per kept search (the random ones are not kept yet)
    first = searches["lstm_100"]
    for r, cell in enumerate(lines[2].split(" | ")[1].split("; ")):
        rewards = [t["val_top1"] for t in first["trials"] if t["round"] == r]
        assert cell == f"{100 * np.median(rewards):.1f} [{100 * max(rewards):.1f}]"
    tests = [t["test"]["top1"] for t in first["final"]["kdas_od"]["seeds"]]
    assert f"| {100 * np.mean(tests):.2f} [" in lines[2] and lines[2].endswith("| 32 |")  # 1,900 s


def test_the_round_check_trains_the_other_rounds_best_as_the_found_model_was(kept):
    rng = np.random.default_rng(2)
    searches = {"lstm_100": made_up_search(rng, "lstm", 100, 0.86),
                "random_200": made_up_search(rng, "random", 200, 0.85)}
    for name, result in searches.items():
        for trial in result["trials"]:
            trial["architecture"] = f"resnet8:{name}_{trial['trial_id']}"
    searches["lstm_100"]["trials"][5]["val_top1"] = 0.99  # round 1's best, and so the found one
    searches["lstm_100"]["found"] = dict(searches["lstm_100"]["trials"][5], parameters=120_000)
    other = study.other_round_best(searches["lstm_100"])
    assert other["round"] == 0 and other["val_top1"] == max(t["val_top1"] for t in searches["lstm_100"]["trials"][:4])
    decision = {"regime": "10k", "train_examples": 10000, "epochs": 10}
    runs = study.round_check_runs("/tmp/study_runs", decision, searches)
    assert [run.name for run in runs] == ["lstm_100", "random_200"] and len({run.workdir for run in runs}) == 2
    argv = " ".join(runs[0].argv)
    assert f"--architecture={other['architecture']} " in argv and "--seed=0 " in argv and "--loss=od" in argv
    assert "--epochs=10 " in argv and "--train_examples=10000 " in argv  # the found model's recipe
    checks = {"lstm_100": {"parameters": 150_000, "val": {"top1": 0.8712}, "test": {"top1": 0.8655}}}
    lines = report.round_check_markdown(searches, checks).splitlines()
    first = searches["lstm_100"]["final"]["kdas_od"]["seeds"][0]
    assert len(lines) == 3 and lines[2].startswith(f"| lstm 100 | 1, 99.00 | 0, {100 * other['val_top1']:.2f} |")
    assert lines[2].endswith(f"| 86.00 / 87.12 | {100 * first['test']['top1']:.2f} / 86.55 |")


def test_the_check_by_search_judges_one_number_per_search(kept):
    judge_made_up_runs(kept)
    runs = {stage: study.read_kept(stage) for stage in ("regimes", "baselines", "searches")}
    rows = report.search_level_claims(runs)
    assert [row["a"]["n"] for row in rows] == [3, 3, 3] and [row["b"]["n"] for row in rows] == [5, 5, 3]
    lstm = [np.mean([t["test"]["top1"] for t in runs["searches"][f"lstm_{seed}"]["final"]["kdas_od"]["seeds"]])
            for seed in study.SEARCH_SEEDS]
    assert rows[0]["a"]["mean"] == pytest.approx(np.mean(lstm), abs=1e-12)
    assert rows[1]["verdict"] == "reversed"  # 0.865 against ResNet-14's 0.87, as the pooled claim 5
    del runs["searches"]["random_300"]
    assert report.search_level_claims(runs) is None
