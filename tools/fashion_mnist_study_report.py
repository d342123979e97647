"""The Fashion-MNIST study's report, from its kept runs (docs/fashion_mnist/study/): every table of
docs/fashion_mnist.md (`report`), the claims judged by step 5's rule (`claims_table`, the statistics in
kdas_tf/reporting/claims.py) with a check by search (`search_level_claims`), and the figures (`draw_figures`).
Reads only the kept JSON; trains nothing.
"""

import os

import numpy as np

import fashion_mnist_study_plan as plan


def baseline_row(baselines, network, loss, split="test"):
    """Step 3's row of `network` trained with `loss`: its top-1 on `split`, one value per seed."""
    return [baselines[f"{network}_{loss}_seed{seed}"][split]["top1"] for seed in plan.BASELINE_SEEDS]


def found_tests(search):
    """A kept search's found model: its OD trainings' test top-1, one value per seed."""
    return [training["test"]["top1"] for training in search["final"]["kdas_od"]["seeds"]]


def complete(kept):
    """Whether every run the claims read is kept: the regime's decision, every baseline and every search."""
    return (plan.regime_decision() is not None
            and len(kept.get("baselines", {})) >= len(plan.BASELINES) * len(plan.BASELINE_SEEDS)
            and len(kept.get("searches", {})) >= len(plan.CONTROLLERS) * len(plan.SEARCH_SEEDS))


def claim_samples(kept):
    """{claim: (side a, side b)} of test top-1 values from the kept runs, or None while a run is missing.
    kept: {stage: {run name: its JSON}}; every side is one number per training (or per search)."""
    if not complete(kept):
        return None
    baselines, searches = kept["baselines"], kept["searches"]
    teachers = kept["regimes"][plan.regime_decision()["regime"]]

    def row(network, loss):
        return baseline_row(baselines, network, loss)

    def found(controller):
        return [value for seed in plan.SEARCH_SEEDS for value in found_tests(searches[f"{controller}_{seed}"])]

    def best_reward(controller):
        return [searches[f"{controller}_{seed}"]["found"]["val_top1"] for seed in plan.SEARCH_SEEDS]

    return {
        "1. the ensemble beats its members (test)": ([teachers["ensemble_test_top1"]], teachers["member_test_top1"]),
        "2. KD beats CE, plain ResNet-8": (row("resnet8", "kd"), row("resnet8", "ce")),
        "3. OD beats KD, plain ResNet-8": (row("resnet8", "od"), row("resnet8", "kd")),
        "4. the found model (LSTM) beats the plain student, both OD": (found("lstm"), row("resnet8", "od")),
        "5. the found model (LSTM) beats the man-made ResNet-14, both OD": (found("lstm"), row("resnet14", "od")),
        "6a. LSTM search's found models beat random search's, OD": (found("lstm"), found("random")),
        "6b. LSTM search's best reward beats random search's (validation)": (best_reward("lstm"), best_reward("random")),
    }


def claims_table(kept):
    """[judged claim] (kdas_tf.reporting.claims.judge) of every claim, from the kept runs; None until complete."""
    from kdas_tf.reporting import claims
    samples = claim_samples(kept)
    return None if samples is None else [claims.judge(claim, a, b) for claim, (a, b) in samples.items()]


def baselines_markdown(kept):
    """Step 3's table: every row's seeds, test top-1 mean with its 95% interval, and the validation's beside it."""
    from kdas_tf.reporting import claims
    names = {"resnet8": "Student ResNet-8", "resnet14": "Man-made ResNet-14"}
    seeds = f"{plan.BASELINE_SEEDS[0]}-{plan.BASELINE_SEEDS[-1]}"
    lines = [f"| row | parameters | test top-1 % per seed ({seeds}) | test top-1 %: mean [95% CI] | val top-1 %: "
             "mean [95% CI] |", "|---|---|---|---|---|"]
    for network, loss in plan.BASELINES:
        cells = []
        for split in ("test", "val"):
            mean, low, high = claims.interval(baseline_row(kept, network, loss, split))
            cells.append(f"{100 * mean:.2f} [{100 * low:.2f}, {100 * high:.2f}]")
        lines.append(f"| {names[network]}, {loss.upper()} | {kept[f'{network}_{loss}_seed0']['parameters']:,} | "
                     + ", ".join(f"{100 * value:.2f}" for value in baseline_row(kept, network, loss))
                     + f" | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def report(kept):
    """Every table of docs/fashion_mnist.md whose runs are kept, in the page's order: [(title, markdown)]."""
    tables = []
    if len(kept["regimes"]) == len(plan.REGIMES):
        tables.append(("Step 1: the teachers' regimes", regimes_markdown(kept["regimes"])))
    decision = plan.regime_decision()
    if decision and os.path.exists(os.path.join(plan.STUDY, "search_epochs.json")):
        tables.append(("Step 2: the reward's ranking", reward_markdown(kept["reward"], decision,
                                                                       plan.read_json_file("search_epochs.json"))))
    if len(kept["baselines"]) == len(plan.BASELINES) * len(plan.BASELINE_SEEDS):
        tables.append(("Step 3: the rows that need no search", baselines_markdown(kept["baselines"])))
    if kept["searches"]:
        tables.append(("Step 4: the searches", searches_markdown(kept["searches"])))
    if kept.get("round_check"):
        tables.append(("Step 4b: the other round's best", round_check_markdown(kept["searches"], kept["round_check"])))
    table = claims_table(kept)
    if table is not None:
        tables.append(("Step 5: the claims", claims_markdown(table)))
        tables.append(("Step 5, checked: one number per search", claims_markdown(search_level_claims(kept))))
    return tables


def search_level_claims(kept):
    """Claims 4, 5 and 6a judged on one number per search (the mean of its found model's trainings), n = 3 a
    side: not in the plan, a check of it. The plan's rows pool the 9 trainings of 3 searches as if independent,
    which leaves out how much the found model varies from search to search. None until every run is kept."""
    from kdas_tf.reporting import claims
    if not complete(kept):
        return None
    baselines, searches = kept["baselines"], kept["searches"]

    def per_search(controller):
        return [float(sum(tests) / len(tests)) for tests in
                (found_tests(searches[f"{controller}_{seed}"]) for seed in plan.SEARCH_SEEDS)]

    def row(network, loss):
        return baseline_row(baselines, network, loss)

    return [claims.judge("4. found (LSTM) beats plain ResNet-8, OD: one number per search",
                         per_search("lstm"), row("resnet8", "od")),
            claims.judge("5. found (LSTM) beats ResNet-14, OD: one number per search",
                         per_search("lstm"), row("resnet14", "od")),
            claims.judge("6a. LSTM's found beat random's, OD: one number per search",
                         per_search("lstm"), per_search("random"))]


def searches_markdown(kept):
    """Step 4's table: each kept search, what its rounds' candidates scored (the rewards it learned from), what
    it found, and its found model's OD trainings (test numbers last: no decision reads them)."""
    from kdas_tf.reporting import claims
    lines = ["| search | candidates' reward per round: median [best] % | found: round, trial, reward % | "
             "found architecture | parameters | found, OD x 3: val top-1 % | found, OD x 3: test top-1 % "
             "[95% CI] | minutes |", "|---|---|---|---|---|---|---|---|"]
    for controller in plan.CONTROLLERS:
        for seed in plan.SEARCH_SEEDS:
            result = kept.get(f"{controller}_{seed}")
            if result is None:
                continue
            rounds = sorted({trial["round"] for trial in result["trials"]})
            rewards = [sorted(t["val_top1"] for t in result["trials"] if t["round"] == r) for r in rounds]
            per_round = "; ".join(f"{100 * float(np.median(values)):.1f} [{100 * values[-1]:.1f}]"
                                  for values in rewards)
            found, final = result["found"], result["final"]["kdas_od"]
            val = [t["val"]["top1"] for t in final["seeds"]]
            mean, low, high = claims.interval(found_tests(result))
            lines.append(
                f"| {controller} {seed} | {per_round} | {found['round']}, {found['trial_id']}, "
                f"{100 * found['val_top1']:.2f} | `{result['found_architecture']}` | {final['parameters']:,} | "
                f"{100 * sum(val) / len(val):.2f} | {100 * mean:.2f} [{100 * low:.2f}, {100 * high:.2f}] | "
                f"{result['study']['seconds'] / 60:.0f} |")
    return "\n".join(lines) + "\n"


def round_check_markdown(searches, checks):
    """Step 4b's table: per search, its found model and its other round's best candidate, each with its search
    reward and its final training from seed 0 (validation first; test after, which decides nothing)."""
    lines = ["| search | found: round, reward % | other round's best: round, reward % | parameters: found / other | "
             "final val top-1 %, seed 0: found / other | final test top-1 %, seed 0: found / other |",
             "|---|---|---|---|---|---|"]
    for name, check in checks.items():
        result = searches[name]
        found, other, first = result["found"], plan.other_round_best(result), result["final"]["kdas_od"]["seeds"][0]
        lines.append(
            f"| {name.replace('_', ' ')} | {found['round']}, {100 * found['val_top1']:.2f} | {other['round']}, "
            f"{100 * other['val_top1']:.2f} | {first['parameters']:,} / {check['parameters']:,} | "
            f"{100 * first['val']['top1']:.2f} / {100 * check['val']['top1']:.2f} | "
            f"{100 * first['test']['top1']:.2f} / {100 * check['test']['top1']:.2f} |")
    return "\n".join(lines) + "\n"


def claims_markdown(table):
    """A claims table: each side's mean with its interval and size, a - b with its interval (points), p, verdict."""
    lines = ["| claim | a: mean % [95% interval] (n) | b: mean % [95% interval] (n) | a - b, points [95% interval] | "
             "p (Welch) | verdict |", "|---|---|---|---|---|---|"]
    for row in table:
        sides = [f"{100 * side['mean']:.2f} [{100 * side['interval'][0]:.2f}, {100 * side['interval'][1]:.2f}] "
                 f"({side['n']})" for side in (row["a"], row["b"])]
        low, high = row["difference_interval"]
        lines.append(f"| {row['claim']} | {sides[0]} | {sides[1]} | {100 * row['difference']:+.2f} "
                     f"[{100 * low:+.2f}, {100 * high:+.2f}] | {row['p']:.3g} | {row['verdict']} |")
    return "\n".join(lines) + "\n"


def figure_points(kept):
    """[(label, parameters, test top-1 values)] of every row of step 3 and every search's found model."""
    baselines, searches = kept["baselines"], kept["searches"]
    points = [(f"{network} {loss.upper()}", baselines[f"{network}_{loss}_seed0"]["parameters"],
               baseline_row(baselines, network, loss)) for network, loss in plan.BASELINES]
    for controller in plan.CONTROLLERS:
        for seed in plan.SEARCH_SEEDS:
            search = searches[f"{controller}_{seed}"]
            points.append((f"{controller} search {seed} OD", search["final"]["kdas_od"]["parameters"],
                           found_tests(search)))
    return points


def draw_figures(kept, folder):
    """accuracy_vs_parameters.png (every row with its 95% interval), searches.png (the LSTM's and random
    search's found models side by side, search by search) and rewards.png (what each search learned from)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from kdas_tf.reporting import claims
    points = figure_points(kept)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    colours = {"lstm": "tab:red", "random": "tab:grey"}
    for label, parameters, values in points:
        mean, low, high = claims.interval(values)
        colour = next((c for name, c in colours.items() if label.startswith(name)), "tab:blue")
        axes.errorbar(parameters / 1e6, 100 * mean, yerr=[[100 * (mean - low)], [100 * (high - mean)]], fmt="o",
                      color=colour, capsize=3)
        axes.annotate(label, (parameters / 1e6, 100 * mean), fontsize=7, xytext=(4, 2), textcoords="offset points")
    axes.set(xlabel="parameters (M)", ylabel="test top-1 % (mean, 95% interval)",
             title="Fashion-MNIST study: every row against its size")
    figure.tight_layout()
    figure.savefig(os.path.join(folder, "accuracy_vs_parameters.png"), dpi=120)
    plt.close(figure)
    figure, axes = plt.subplots(figsize=(7, 4))
    for offset, controller in ((-0.15, "lstm"), (0.15, "random")):
        for position, seed in enumerate(plan.SEARCH_SEEDS):
            search = kept["searches"][f"{controller}_{seed}"]
            row = search["final"]["kdas_od"]
            mean, low, high = claims.interval(found_tests(search))
            axes.errorbar(position + offset, 100 * mean, yerr=[[100 * (mean - low)], [100 * (high - mean)]], fmt="o",
                          color=colours[controller], capsize=3, label=controller if position == 0 else None)
            axes.annotate(f"{row['parameters'] / 1e6:.3f}M", (position + offset, 100 * mean), fontsize=7,
                          xytext=(4, 0), textcoords="offset points")
    axes.set_xticks(range(len(plan.SEARCH_SEEDS)), [f"search seed {seed}" for seed in plan.SEARCH_SEEDS])
    axes.set(ylabel="found model, OD: test top-1 % (3 seeds)", title="LSTM controller and random search")
    axes.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(folder, "searches.png"), dpi=120)
    plt.close(figure)
    draw_rewards(kept["searches"], folder, plt)
    return points


def reward_curves(searches):
    """{search name: (trial numbers, rewards, the trial number each round starts at)} in the order trained."""
    curves = {}
    for name, result in searches.items():
        trials = sorted(result["trials"], key=lambda trial: int(trial["trial_id"]))
        rounds = {trial["round"] for trial in trials}
        starts = sorted(min(int(t["trial_id"]) for t in trials if t["round"] == r) for r in rounds)
        curves[name] = ([int(t["trial_id"]) for t in trials], [t["val_top1"] for t in trials], starts)
    return curves


def draw_rewards(searches, folder, plt):
    """rewards.png: every candidate's reward in the order it trained, one line per search, rounds marked."""
    figure, axes = plt.subplots(figsize=(7, 4))
    colours = {"lstm": "tab:red", "random": "tab:grey"}
    markers = dict(zip(plan.SEARCH_SEEDS, "os^"))
    for name, (numbers, rewards, starts) in reward_curves(searches).items():
        controller, seed = name.split("_")
        axes.plot(numbers, [100 * r for r in rewards], marker=markers.get(int(seed), "o"), color=colours[controller],
                  markersize=4, linewidth=0.8, alpha=0.7, label=name.replace("_", " search "))
        for start in starts[1:]:
            axes.axvline(start - 0.5, color="black", linewidth=0.5, linestyle=":")
    axes.set(xlabel="candidate, in the order trained (dotted: a new round grows the last round's best)",
             ylabel="reward: val top-1 % after the search's training", title="What each search learned from")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(os.path.join(folder, "rewards.png"), dpi=120)
    plt.close(figure)


def regimes_markdown(reports):
    """Step 1's table: every regime's teachers, training and validation numbers first (what the rule reads),
    test numbers after (what it never reads)."""
    lines = ["| regime | images x epochs | members' training top-1 % | member val top-1 % | ensemble val top-1 % | "
             "gain (val) | member test top-1 % | ensemble test top-1 % | oracle test % | training images right for "
             "all 5 / none | minutes |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, (images, epochs) in plan.REGIMES.items():
        r = reports[name]
        histogram = r["train_members_correct_histogram"]
        lines.append(
            f"| {name} | {images:,} x {epochs} | {100 * r['member_train_top1_mean']:.2f} | "
            f"{100 * r['member_val_top1_mean']:.2f} ± {100 * r['member_val_top1_std']:.2f} | "
            f"{100 * r['ensemble_val_top1']:.2f} | {100 * (r['ensemble_val_top1'] - r['member_val_top1_mean']):+.2f} | "
            f"{100 * r['member_test_top1_mean']:.2f} ± {100 * r['member_test_top1_std']:.2f} | "
            f"{100 * r['ensemble_test_top1']:.2f} | {100 * r['oracle_test_top1']:.2f} | "
            f"{100 * histogram[-1]:.1f}% / {100 * histogram[0]:.1f}% | {r['study']['seconds'] / 60:.0f} |")
    return "\n".join(lines) + "\n"


def reward_markdown(kept, decision, searching):
    """Step 2's table: each candidate's rewards at the search lengths and its final validation top-1 (what the
    rule reads), its final test top-1 after (what it does not)."""
    lengths, epochs = plan.reward_lengths(decision["epochs"]), decision["epochs"]
    lines = ["| candidate | parameters | " + " | ".join(f"reward, {n} epoch(s) %" for n in lengths)
             + f" | final val top-1 % ({epochs} epochs) | final test top-1 % |", "|---" * (len(lengths) + 4) + "|"]
    for index, arch in enumerate(plan.reward_candidates()):
        final = kept[f"e{epochs}_c{index}"]
        lines.append(f"| `{arch}` | {final['parameters']:,} | "
                     + " | ".join(f"{100 * kept[f'e{n}_c{index}']['val']['top1']:.2f}" for n in lengths)
                     + f" | {100 * final['val']['top1']:.2f} | {100 * final['test']['top1']:.2f} |")
    lines.append("| Spearman's rho with the final val top-1 | | "
                 + " | ".join(f"{searching['spearman'][str(n)]:.3f}" for n in lengths) + " | | |")
    return "\n".join(lines) + "\n"
