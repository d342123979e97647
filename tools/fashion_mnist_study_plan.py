"""The Fashion-MNIST study's plan (docs/fashion_mnist.md, "Plan"), fixed before anything trained: the data, the
recipe, every run with its price here, the pre-registered rules that decide between stages (`select_regime`,
`decide_search`), and the folder of kept runs they read (docs/fashion_mnist/study/). The command is
tools/fashion_mnist_study.py; the page's tables and the claims are tools/fashion_mnist_study_report.py.
"""

import dataclasses
import json
import os

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
# In the order they run; each a folder of kept runs. round_check was added after the first three searches
# (docs/fashion_mnist.md, "Step 4b"): it reads no test number and decides nothing.
STAGES = ("regimes", "reward", "baselines", "searches", "round_check")

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
                                  f"--epochs={epochs}", f"--workdir={regime_dir(runs_dir, name)}"),
                regime_dir(runs_dir, name), os.path.join("teachers", "results.json"),
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
    from kdas_tf.runtime import rows  # its folder's name; no TensorFlow
    return os.path.join("train", rows.train_name(arch, loss), "results.json")


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


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as file:
        json.dump(value, file, indent=2, sort_keys=True)
        file.write("\n")
    os.replace(path + ".tmp", path)


def other_round_best(result):
    """The best-rewarded candidate of a search's other round than its found model's (two rounds): (round, trial)."""
    others = [trial for trial in result["trials"] if trial["round"] != result["found"]["round"]]
    return max(others, key=lambda trial: (trial["val_top1"], -int(trial["trial_id"])))


def round_check_runs(runs_dir, decision, searches):
    """Step 4b: each kept search's best candidate of its other round, trained as its found model was (the final
    recipe, OD, seed 0 as its first training), one work directory each."""
    runs = []
    for name, result in searches.items():
        arch = other_round_best(result)["architecture"]
        workdir = os.path.join(runs_dir, f"round_check_{name}")
        runs.append(Run("round_check", name, (
            "kdas_tf.train", *trained(runs_dir, decision), "--loss=od", f"--architecture={arch}", "--seed=0",
            f"--workdir={workdir}"), workdir, train_result(arch, "od"),
            seconds("addon_od", decision["train_examples"], decision["epochs"])))
    return runs


def named_runs(runs_dir):
    """Every run the study can name now, in order: later stages appear once the decisions they need are kept."""
    runs = regime_runs(runs_dir)
    decision = regime_decision()
    if decision is None:
        return runs
    runs += reward_runs(runs_dir, decision) + baseline_runs(runs_dir, decision)
    searching = search_decision(decision)
    if searching is None:
        return runs
    return runs + search_runs(runs_dir, decision, searching) + round_check_runs(runs_dir, decision,
                                                                                read_kept("searches"))


def unnamed_hours():
    """What the runs not yet named will cost here (the dry run prices them before their decisions exist), at
    equal cost per training (IMAGE_EPOCHS): step 2 at its longest, step 3, step 4 at its cap."""
    reward = REWARD_CANDIDATES * (0.1 + 0.3 + 1) * seconds("addon_od", IMAGE_EPOCHS, 1)
    baselines = len(BASELINE_SEEDS) * sum(seconds(kind, IMAGE_EPOCHS, 1) for kind in (
        "student_ce", "student_distil_cache_built", "student_distil_cache_read", "resnet14_od"))
    found = len(CONTROLLERS) * len(SEARCH_SEEDS) * FOUND_SEEDS * seconds("addon_od", IMAGE_EPOCHS, 1)
    return {"reward": reward / 3600, "baselines": baselines / 3600, "searches": SEARCH_HOURS + found / 3600}
