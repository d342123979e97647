"""The Fashion-MNIST study (docs/fashion_mnist.md) in one command: every run, in order, each resumed or skipped.

    python tools/fashion_mnist_study.py --dry_run        # every run with its price here, nothing trains
    python tools/fashion_mnist_study.py                  # run what is not finished (resumes after a kill)
    python tools/fashion_mnist_study.py --stage=regimes --commit   # one stage, committing each run's JSON

A run is one `python -m kdas_tf.<command>` in its own work directory under --runs; it is finished when its
result JSON is in docs/fashion_mnist/study/ (copied there with its log as it ends, and committed with
--commit), so a study spread over several sessions picks up where the committed files stop. The decisions
between stages (which teacher regime, how many search epochs) are made by code from committed JSON, by the
rules docs/fashion_mnist.md states before any result: `select_regime` here.
"""

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = os.path.join(ROOT, "docs", "fashion_mnist", "study")

# Fixed before anything trained (docs/fashion_mnist.md, "Plan"): the data, the split and one recipe.
DATA = ("--dataset=fashion_mnist", "--val_fraction=0.05", "--split_seed=0")
RECIPE = ("--batch_size=128", "--learning_rate=0.1", "--temperature=4", "--alpha=0.9")
TEACHERS = ("--teacher_network=resnet8", "--num_teachers=5")
IMAGE_EPOCHS = 100_000  # what every regime, and so every training of the study, costs per network
# (training images, epochs): the four regimes of equal cost; 10k x 10 is the previous run's.
REGIMES = {"50k": (50_000, 2), "20k": (20_000, 5), "10k": (10_000, 10), "4k": (4_000, 25)}
FIT_THRESHOLD = 0.95  # members' mean top-1 on their own training images (not augmented)
TIE = 0.001  # ensemble gains this close are a tie, broken by the ensemble's validation top-1

# Steps 2-4 (docs/fashion_mnist.md, "Plan").
BUDGET = ("--backbone=resnet8", "--budget=0.18", "--ops_per_addon=2")
REWARD_CANDIDATES = 10
RANK_THRESHOLD = 0.6  # Spearman's rho the shorter search training must reach to be chosen
BASELINES = (("resnet8", "ce"), ("resnet8", "kd"), ("resnet8", "od"), ("resnet14", "od"))
BASELINE_SEEDS = range(5)
CONTROLLERS = ("lstm", "random")
SEARCH_SEEDS = (100, 200, 300)
ROUNDS = 2
TRIAL_CHOICES = (33, 24, 16, 12, 8)  # per round, the most whose six searches fit SEARCH_HOURS
SEARCH_HOURS = 2.5
FOUND_SEEDS = 3

# Seconds per 100,000 training images, measured on this machine in the previous Fashion-MNIST run
# (its run.log and rerun.log, in git history before 2026-12-03; 2 cores, idle), evaluation included.
STAGES = ("regimes", "reward", "baselines", "searches")  # in the order they run; each a folder of kept runs

SECONDS_PER_100K = {"teacher": 207, "student_ce": 212, "student_distil_cache_built": 416,
                    "student_distil_cache_read": 196, "addon_od": 380, "resnet14_od": 439, "candidate_od": 530}


@dataclasses.dataclass(frozen=True)
class Run:
    """One command of the study: where it works, what it leaves, where that is kept, what it costs here."""
    stage: str
    name: str
    argv: tuple
    workdir: str
    result: str  # the run's result JSON, relative to its work directory
    seconds: float

    @property
    def kept(self):
        return os.path.join(STUDY, self.stage, f"{self.name}.json")

    @property
    def finished(self):
        return os.path.exists(self.kept)


def regime_runs(runs_dir):
    """The teachers alone, once per regime (docs/fashion_mnist.md, "Step 1")."""
    return [Run("regimes", name, ("kdas_tf.teachers", *DATA, *RECIPE, *TEACHERS, f"--train_examples={images}",
                                  f"--epochs={epochs}", f"--workdir={os.path.join(runs_dir, 'regime_' + name)}"),
                os.path.join(runs_dir, "regime_" + name), os.path.join("teachers", "results.json"),
                5 * SECONDS_PER_100K["teacher"] * images * epochs / 100_000)
            for name, (images, epochs) in REGIMES.items()]


def regime_dir(runs_dir, name):
    return os.path.join(runs_dir, "regime_" + name)


def trained(runs_dir, decision, epochs=None):
    """The flags every training after step 1 shares: the chosen regime's images, epochs and teachers."""
    return (*DATA, *RECIPE, *TEACHERS, f"--train_examples={decision['train_examples']}",
            f"--epochs={epochs or decision['epochs']}", f"--teacher_epochs={decision['epochs']}",
            f"--teacher_workdir={regime_dir(runs_dir, decision['regime'])}")


def seconds(kind, images, epochs):
    return SECONDS_PER_100K[kind] * images * epochs / 100_000


def train_result(arch, loss):
    """Where python -m kdas_tf.train keeps one training's results, under its work directory."""
    return os.path.join("train", f"{arch.replace('/', '_').replace(':', '-')}_{loss}", "results.json")


def reward_lengths(epochs):
    """The search trainings step 2 compares: a tenth and three tenths of the recipe's epochs, at least 1."""
    return sorted({max(1, round(0.1 * epochs)), max(1, round(0.3 * epochs))})


def reward_candidates():
    """Step 2's candidates: the random controller's first REWARD_CANDIDATES distinct round-1 draws under the
    budget (search seed 0), kept in reward_candidates.json the first time so that they never change."""
    path = os.path.join(STUDY, "reward_candidates.json")
    if os.path.exists(path):
        return json.load(open(path))
    from kdas_tf import assembly, config  # TensorFlow: only when the candidates are first drawn
    run = config.from_args(["--workdir=/tmp/unused", *DATA, *BUDGET, "--controller=random", "--search_seed=0",
                            f"--trials_per_round={REWARD_CANDIDATES}"])
    budget, _ = assembly.budget(run, 10, (28, 28, 1))
    rounds = assembly.make_oracle(run, 10, (28, 28, 1), budget).search_rounds
    drawn = []
    while len(drawn) < REWARD_CANDIDATES:
        arch = str(rounds.backbone().with_addons(rounds.stage_ops(rounds.controller.sample())))
        drawn += [arch] if arch not in drawn else []
    write_json(path, drawn)
    return drawn


def reward_runs(runs_dir, decision):
    """Step 2: each candidate at each search length and to the final recipe, one work directory per length
    (its candidates share one teacher-output cache)."""
    images, epochs = decision["train_examples"], decision["epochs"]
    return [Run("reward", f"e{length}_c{index}",
                ("kdas_tf.train", *trained(runs_dir, decision, length), "--loss=od",
                 f"--architecture={arch}", f"--workdir={os.path.join(runs_dir, f'reward_e{length}')}"),
                os.path.join(runs_dir, f"reward_e{length}"), train_result(arch, "od"),
                seconds("addon_od", images, length))
            for length in reward_lengths(epochs) + [epochs] for index, arch in enumerate(reward_candidates())]


def search_decision(decision):
    """Step 2's rule, once its runs are kept: the search's epochs by rank correlation, then its trials per round."""
    path = os.path.join(STUDY, "search_epochs.json")
    if os.path.exists(path):
        return json.load(open(path))
    result = decide_search(read_kept("reward"), decision)
    if result is not None:
        write_json(path, result)
    return result


def decide_search(kept, decision):
    """Step 2's rule on the kept reward runs {name: JSON}: its record, or None until every run is kept."""
    from kdas_tf.reporting import claims
    epochs = decision["epochs"]
    wanted = {f"e{length}_c{index}" for length in reward_lengths(epochs) + [epochs] for index in range(REWARD_CANDIDATES)}
    if not wanted <= set(kept):
        return None
    final = [kept[f"e{epochs}_c{index}"]["val"]["top1"] for index in range(REWARD_CANDIDATES)]
    rho = {length: claims.spearman([kept[f"e{length}_c{index}"]["val"]["top1"] for index in range(REWARD_CANDIDATES)],
                                   final)[0] for length in reward_lengths(epochs)}
    chosen = next((length for length in sorted(rho) if rho[length] >= RANK_THRESHOLD), max(rho))
    per_candidate = seconds("candidate_od", decision["train_examples"], chosen)
    trials = next((t for t in TRIAL_CHOICES
                   if len(CONTROLLERS) * len(SEARCH_SEEDS) * ROUNDS * t * per_candidate <= SEARCH_HOURS * 3600),
                  TRIAL_CHOICES[-1])
    result = {"search_epochs": chosen, "trials_per_round": trials, "spearman": {str(k): v for k, v in rho.items()},
              "rule": f"the fewest epochs whose rho >= {RANK_THRESHOLD}, else the most; then the most trials per "
                      f"round of {TRIAL_CHOICES} whose six searches cost <= {SEARCH_HOURS} h here (else the fewest)"}
    return result


def baseline_runs(runs_dir, decision):
    """Step 3: the rows that need no search, 5 seeds each; one work directory per seed (KD and OD share its
    teacher-output cache)."""
    kind = {"ce": "student_ce", "kd": "student_distil_cache_built", "od": "student_distil_cache_read"}
    return [Run("baselines", f"{network}_{loss}_seed{seed}",
                ("kdas_tf.train", *trained(runs_dir, decision), f"--network={network}", f"--loss={loss}",
                 f"--seed={seed}", f"--workdir={os.path.join(runs_dir, f'baselines_seed{seed}')}"),
                os.path.join(runs_dir, f"baselines_seed{seed}"), train_result(network, loss),
                seconds("resnet14_od" if network == "resnet14" else kind[loss], decision["train_examples"],
                        decision["epochs"]))
            for seed in BASELINE_SEEDS for network, loss in BASELINES]


def search_runs(runs_dir, decision, searching):
    """Step 4: three searches per controller, each with its found model trained with OD from FOUND_SEEDS seeds."""
    images, epochs = decision["train_examples"], decision["epochs"]
    cost = (ROUNDS * searching["trials_per_round"] * seconds("candidate_od", images, searching["search_epochs"])
            + FOUND_SEEDS * seconds("addon_od", images, epochs))
    runs = []
    for controller in CONTROLLERS:
        for seed in SEARCH_SEEDS:
            workdir = os.path.join(runs_dir, f"search_{controller}_{seed}")
            runs.append(Run("searches", f"{controller}_{seed}", (
                "kdas_tf.search", *trained(runs_dir, decision), *BUDGET, f"--rounds={ROUNDS}",
                f"--trials_per_round={searching['trials_per_round']}", "--search_loss=od",
                f"--search_epochs={searching['search_epochs']}", "--final_loss=od", "--student_loss=", "--manmade=",
                f"--seeds={FOUND_SEEDS}", f"--controller={controller}", f"--search_seed={seed}",
                f"--workdir={workdir}"), workdir, "results.json", cost))
    return runs


def select_regime(reports):
    """The pre-registered rule: {regime: teachers' report} -> (the regime, why), from validation and training
    numbers only (never the test split).

    Among the regimes whose members reach FIT_THRESHOLD mean top-1 on their own training images, the largest
    ensemble gain over the mean member on the validation split; gains within TIE go to the higher ensemble
    validation top-1, then to the first regime listed. When no regime reaches the threshold, the same choice
    among all of them.
    """
    def gain(report):
        return report["ensemble_val_top1"] - report["member_val_top1_mean"]

    fitting = [name for name in reports if reports[name]["member_train_top1_mean"] >= FIT_THRESHOLD]
    pool = fitting or list(reports)
    best_gain = max(gain(reports[name]) for name in pool)
    close = [name for name in pool if gain(reports[name]) >= best_gain - TIE]
    chosen = max(close, key=lambda name: (reports[name]["ensemble_val_top1"], -pool.index(name)))
    why = (f"members fit their training images (>= {FIT_THRESHOLD:.0%}) in {', '.join(fitting)}" if fitting
           else f"no regime's members reach {FIT_THRESHOLD:.0%} on their training images: all compared")
    why += (f"; largest validation gain of the ensemble over its mean member: {chosen} "
            f"({100 * gain(reports[chosen]):+.2f} points)")
    if len(close) > 1:
        why += f"; tied within {100 * TIE:.1f} points with {', '.join(n for n in close if n != chosen)}, " \
               "decided by the ensemble's validation top-1"
    return chosen, why


def read_json_file(name):
    """A decision file of the study folder (regime.json, ...)."""
    return json.load(open(os.path.join(STUDY, name)))


def read_kept(stage):
    """{run name: its kept JSON} of one stage's finished runs."""
    folder = os.path.join(STUDY, stage)
    if not os.path.isdir(folder):
        return {}
    return {name[:-5]: json.load(open(os.path.join(folder, name))) for name in sorted(os.listdir(folder))
            if name.endswith(".json")}


def regime_decision():
    """The chosen regime's record (regime.json), made once every regime's teachers are kept; None before."""
    path = os.path.join(STUDY, "regime.json")
    if os.path.exists(path):
        return json.load(open(path))
    reports = read_kept("regimes")
    if set(reports) != set(REGIMES):
        return None
    chosen, why = select_regime({name: reports[name] for name in REGIMES})
    images, epochs = REGIMES[chosen]
    decision = {"regime": chosen, "train_examples": images, "epochs": epochs, "why": why,
                "rule": select_regime.__doc__.split("\n\n")[1].strip().replace("\n    ", " ")}
    write_json(path, decision)
    return decision


def claim_samples(kept):
    """{claim: (side a, side b)} of test top-1 values from the kept runs, or None while a run is missing.
    kept: {stage: {run name: its JSON}}; every side is one number per training (or per search)."""
    regime = regime_decision()
    baselines, searches = kept.get("baselines", {}), kept.get("searches", {})
    if regime is None or len(baselines) < len(BASELINES) * len(BASELINE_SEEDS) or \
            len(searches) < len(CONTROLLERS) * len(SEARCH_SEEDS):
        return None
    teachers = kept["regimes"][regime["regime"]]

    def row(network, loss):
        return [baselines[f"{network}_{loss}_seed{seed}"]["test"]["top1"] for seed in BASELINE_SEEDS]

    def found(controller):
        return [training["test"]["top1"] for seed in SEARCH_SEEDS
                for training in searches[f"{controller}_{seed}"]["final"]["kdas_od"]["seeds"]]

    def best_reward(controller):
        return [searches[f"{controller}_{seed}"]["found"]["val_top1"] for seed in SEARCH_SEEDS]

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
    lines = [f"| row | parameters | test top-1 % per seed ({BASELINE_SEEDS[0]}-{BASELINE_SEEDS[-1]}) | test top-1 %: "
             "mean [95% CI] | val top-1 %: mean [95% CI] |", "|---|---|---|---|---|"]
    for network, loss in BASELINES:
        runs = [kept[f"{network}_{loss}_seed{seed}"] for seed in BASELINE_SEEDS]
        cells = []
        for split in ("test", "val"):
            mean, low, high = claims.interval([run[split]["top1"] for run in runs])
            cells.append(f"{100 * mean:.2f} [{100 * low:.2f}, {100 * high:.2f}]")
        lines.append(f"| {names[network]}, {loss.upper()} | {runs[0]['parameters']:,} | "
                     + ", ".join(f"{100 * run['test']['top1']:.2f}" for run in runs) + f" | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def report(kept):
    """Every table of docs/fashion_mnist.md whose runs are kept, in the page's order: [(title, markdown)]."""
    tables = []
    if len(kept["regimes"]) == len(REGIMES):
        tables.append(("Step 1: the teachers' regimes", regimes_markdown(kept["regimes"])))
    decision = regime_decision()
    if decision and os.path.exists(os.path.join(STUDY, "search_epochs.json")):
        tables.append(("Step 2: the reward's ranking", reward_markdown(kept["reward"], decision,
                                                                       read_json_file("search_epochs.json"))))
    if len(kept["baselines"]) == len(BASELINES) * len(BASELINE_SEEDS):
        tables.append(("Step 3: the rows that need no search", baselines_markdown(kept["baselines"])))
    if kept["searches"]:
        tables.append(("Step 4: the searches", searches_markdown(kept["searches"])))
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
    if claim_samples(kept) is None:
        return None
    baselines, searches = kept["baselines"], kept["searches"]

    def per_search(controller):
        return [float(sum(t["test"]["top1"] for t in row) / len(row)) for row in
                (searches[f"{controller}_{seed}"]["final"]["kdas_od"]["seeds"] for seed in SEARCH_SEEDS)]

    def row(network, loss):
        return [baselines[f"{network}_{loss}_seed{seed}"]["test"]["top1"] for seed in BASELINE_SEEDS]

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
    for controller in CONTROLLERS:
        for seed in SEARCH_SEEDS:
            result = kept.get(f"{controller}_{seed}")
            if result is None:
                continue
            rounds = sorted({trial["round"] for trial in result["trials"]})
            rewards = [sorted(t["val_top1"] for t in result["trials"] if t["round"] == r) for r in rounds]
            per_round = "; ".join(f"{100 * float(np.median(values)):.1f} [{100 * values[-1]:.1f}]" for values in rewards)
            found, final = result["found"], result["final"]["kdas_od"]
            val = [t["val"]["top1"] for t in final["seeds"]]
            mean, low, high = claims.interval([t["test"]["top1"] for t in final["seeds"]])
            lines.append(
                f"| {controller} {seed} | {per_round} | {found['round']}, {found['trial_id']}, "
                f"{100 * found['val_top1']:.2f} | `{result['found_architecture']}` | {final['parameters']:,} | "
                f"{100 * sum(val) / len(val):.2f} | {100 * mean:.2f} [{100 * low:.2f}, {100 * high:.2f}] | "
                f"{result['study']['seconds'] / 60:.0f} |")
    return "\n".join(lines) + "\n"


def claims_markdown(table):
    lines = ["| claim | a: mean % [95% interval] (n) | b: mean % [95% interval] (n) | difference | p (Welch) | verdict |",
             "|---|---|---|---|---|---|"]
    for row in table:
        sides = [f"{100 * side['mean']:.2f} [{100 * side['interval'][0]:.2f}, {100 * side['interval'][1]:.2f}] "
                 f"({side['n']})" for side in (row["a"], row["b"])]
        lines.append(f"| {row['claim']} | {sides[0]} | {sides[1]} | {100 * row['difference']:+.2f} | "
                     f"{row['p']:.3g} | {row['verdict']} |")
    return "\n".join(lines) + "\n"


def figure_points(kept):
    """[(label, parameters, test top-1 values)] of every row of step 3 and every search's found model."""
    baselines, searches = kept["baselines"], kept["searches"]
    points = [(f"{network} {loss.upper()}", baselines[f"{network}_{loss}_seed0"]["parameters"],
               [baselines[f"{network}_{loss}_seed{seed}"]["test"]["top1"] for seed in BASELINE_SEEDS])
              for network, loss in BASELINES]
    for controller in CONTROLLERS:
        for seed in SEARCH_SEEDS:
            row = searches[f"{controller}_{seed}"]["final"]["kdas_od"]
            points.append((f"{controller} search {seed} OD", row["parameters"], [t["test"]["top1"] for t in row["seeds"]]))
    return points


def draw_figures(kept, folder):
    """accuracy_vs_parameters.png (every row with its 95% interval) and searches.png (the LSTM's and random
    search's found models side by side, search by search)."""
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
        for position, seed in enumerate(SEARCH_SEEDS):
            row = kept["searches"][f"{controller}_{seed}"]["final"]["kdas_od"]
            mean, low, high = claims.interval([t["test"]["top1"] for t in row["seeds"]])
            axes.errorbar(position + offset, 100 * mean, yerr=[[100 * (mean - low)], [100 * (high - mean)]], fmt="o",
                          color=colours[controller], capsize=3, label=controller if position == 0 else None)
            axes.annotate(f"{row['parameters'] / 1e6:.3f}M", (position + offset, 100 * mean), fontsize=7,
                          xytext=(4, 0), textcoords="offset points")
    axes.set_xticks(range(len(SEARCH_SEEDS)), [f"search seed {seed}" for seed in SEARCH_SEEDS])
    axes.set(ylabel="found model, OD: test top-1 % (3 seeds)", title="LSTM controller and random search")
    axes.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(folder, "searches.png"), dpi=120)
    plt.close(figure)
    return points


def regimes_markdown(reports):
    """Step 1's table: every regime's teachers, training and validation numbers first (what the rule reads),
    test numbers after (what it never reads)."""
    lines = ["| regime | images x epochs | members' training top-1 % | member val top-1 % | ensemble val top-1 % | "
             "gain (val) | member test top-1 % | ensemble test top-1 % | oracle test % | training images right for "
             "all 5 / none | minutes |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, (images, epochs) in REGIMES.items():
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
    lengths, epochs = reward_lengths(decision["epochs"]), decision["epochs"]
    lines = ["| candidate | parameters | " + " | ".join(f"reward, {n} epoch(s) %" for n in lengths)
             + f" | final val top-1 % ({epochs} epochs) | final test top-1 % |", "|---" * (len(lengths) + 4) + "|"]
    for index, arch in enumerate(reward_candidates()):
        final = kept[f"e{epochs}_c{index}"]
        lines.append(f"| `{arch}` | {final['parameters']:,} | "
                     + " | ".join(f"{100 * kept[f'e{n}_c{index}']['val']['top1']:.2f}" for n in lengths)
                     + f" | {100 * final['val']['top1']:.2f} | {100 * final['test']['top1']:.2f} |")
    lines.append("| Spearman's rho with the final val top-1 | | "
                 + " | ".join(f"{searching['spearman'][str(n)]:.3f}" for n in lengths) + " | | |")
    return "\n".join(lines) + "\n"


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as file:
        json.dump(value, file, indent=2, sort_keys=True)
        file.write("\n")
    os.replace(path + ".tmp", path)


def execute(run, python, commit):
    """Run (or resume) one command, then keep its result JSON and log in docs/; returns its exit code."""
    os.makedirs(run.workdir, exist_ok=True)
    log_path = os.path.join(run.workdir, "study.log")
    started = time.time()
    print(f"[{time.strftime('%H:%M:%S')}] {run.stage}/{run.name}: python -m {' '.join(run.argv)} "
          f"(about {run.seconds / 60:.0f} min here, idle)", flush=True)
    with open(log_path, "a") as log:
        code = subprocess.call([python, "-m", *run.argv], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        print(f"{run.stage}/{run.name} stopped with exit code {code}: see {log_path}; rerun to resume", flush=True)
        return code
    result = json.load(open(os.path.join(run.workdir, run.result)))
    commit_id = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    result["study"] = {"command": "python -m " + " ".join(run.argv), "code": commit_id.strip(),
                       "seconds": round(time.time() - started, 1),
                       "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "load_average": os.getloadavg()}
    write_json(run.kept, result)
    shutil.copyfile(log_path, run.kept[:-5] + ".log")
    print(f"{run.stage}/{run.name} done in {(time.time() - started) / 60:.1f} min: {run.kept}", flush=True)
    if commit:
        regime_decision()  # made as soon as its runs are kept, and committed with them
        subprocess.check_call(["git", "add", STUDY], cwd=ROOT)  # the run's JSON and log, and any decision made
        subprocess.check_call(["git", "commit", "-q", "-m", f"Study: {run.stage}/{run.name} finished "
                               f"({(time.time() - started) / 60:.0f} min), its results kept"], cwd=ROOT)
    return 0


def plan(runs_dir):
    """Every run the study can name now, in order: later stages appear once the decisions they need are kept."""
    runs = regime_runs(runs_dir)
    decision = regime_decision()
    if decision is None:
        return runs
    runs += reward_runs(runs_dir, decision) + baseline_runs(runs_dir, decision)
    searching = search_decision(decision)
    return runs + (search_runs(runs_dir, decision, searching) if searching else [])


def unnamed_hours():
    """What the runs not yet named will cost here (the dry run prices them before their decisions exist), at
    equal cost per training (IMAGE_EPOCHS): step 2 at its longest, step 3, step 4 at its cap."""
    reward = REWARD_CANDIDATES * (0.1 + 0.3 + 1) * seconds("addon_od", IMAGE_EPOCHS, 1)
    baselines = len(BASELINE_SEEDS) * sum(seconds(kind, IMAGE_EPOCHS, 1) for kind in (
        "student_ce", "student_distil_cache_built", "student_distil_cache_read", "resnet14_od"))
    found = len(CONTROLLERS) * len(SEARCH_SEEDS) * FOUND_SEEDS * seconds("addon_od", IMAGE_EPOCHS, 1)
    return {"reward": reward / 3600, "baselines": baselines / 3600, "searches": SEARCH_HOURS + found / 3600}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry_run", action="store_true", help="print every run with its price; train nothing")
    parser.add_argument("--stage", default=None, help="run only this stage (regimes, reward, baselines, searches)")
    parser.add_argument("--runs", default=os.path.join(ROOT, "runs", "fashion_mnist_study"),
                        help="where the work directories go")
    parser.add_argument("--commit", action="store_true", help="git-commit each run's kept JSON and log as it ends")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--report", action="store_true",
                        help="print every table of docs/fashion_mnist.md whose runs are kept; train nothing")
    args = parser.parse_args()
    if args.report:
        for title, markdown in report({stage: read_kept(stage) for stage in STAGES}):
            print(f"{title}\n\n{markdown}")
        return 0
    runs = [run for run in plan(args.runs) if args.stage in (None, run.stage)]
    if args.dry_run:
        left = [run for run in runs if not run.finished]
        for run in runs:
            print(f"{'done' if run.finished else f'{run.seconds / 60:5.0f} min'}  {run.stage}/{run.name}: "
                  f"python -m {' '.join(run.argv)}")
        named = {run.stage for run in runs}
        later = {stage: hours for stage, hours in unnamed_hours().items() if stage not in named}
        print(f"{len(runs) - len(left)} of {len(runs)} named runs done; {sum(r.seconds for r in left) / 3600:.1f} h "
              "left of them at the previous run's speed on this machine, idle")
        for stage, hours in later.items():
            print(f"  then {stage}: about {hours:.1f} h (named once the decisions before it are kept)")
        decision = regime_decision()
        print(f"regime: {decision['regime']} ({decision['why']})" if decision else
              "regime: decided when every regime's teachers are kept")
        return 0
    for run in runs:
        if not run.finished and execute(run, args.python, args.commit) != 0:
            return 2
    decision = regime_decision()
    if decision:
        print(f"regime: {decision['regime']}: {decision['why']}")
    kept = {stage: read_kept(stage) for stage in STAGES}
    table = claims_table(kept)
    if table is not None:
        by_search = search_level_claims(kept)
        write_json(os.path.join(STUDY, "claims.json"), table)
        write_json(os.path.join(STUDY, "claims_by_search.json"), by_search)
        with open(os.path.join(STUDY, "claims.md"), "w") as file:
            file.write(claims_markdown(table) + "\nChecked with one number per search (not in the plan):\n\n"
                       + claims_markdown(by_search))
        draw_figures(kept, STUDY)
        print(claims_markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
