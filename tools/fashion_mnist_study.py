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

# Seconds per 100,000 training images, measured on this machine in the previous Fashion-MNIST run
# (its run.log and rerun.log, in git history before 2026-12-03; 2 cores, idle), evaluation included.
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
        paths = [run.kept, run.kept[:-5] + ".log"] + [os.path.join(STUDY, "regime.json")] * (regime_decision() is not None)
        subprocess.check_call(["git", "add", *paths], cwd=ROOT)
        subprocess.check_call(["git", "commit", "-q", "-m", f"Study: {run.stage}/{run.name} finished "
                               f"({(time.time() - started) / 60:.0f} min), its results kept"], cwd=ROOT)
    return 0


def plan(runs_dir):
    """Every run the study can name now, in order: later stages appear once the decisions they need are kept."""
    return regime_runs(runs_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry_run", action="store_true", help="print every run with its price; train nothing")
    parser.add_argument("--stage", default=None, help="run only this stage (regimes)")
    parser.add_argument("--runs", default=os.path.join(ROOT, "runs", "fashion_mnist_study"),
                        help="where the work directories go")
    parser.add_argument("--commit", action="store_true", help="git-commit each run's kept JSON and log as it ends")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    runs = [run for run in plan(args.runs) if args.stage in (None, run.stage)]
    if args.dry_run:
        left = [run for run in runs if not run.finished]
        for run in runs:
            print(f"{'done' if run.finished else f'{run.seconds / 60:5.0f} min'}  {run.stage}/{run.name}: "
                  f"python -m {' '.join(run.argv)}")
        print(f"{len(runs) - len(left)} of {len(runs)} runs done; {sum(r.seconds for r in left) / 3600:.1f} h left "
              "at the previous run's speed on this machine, idle")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
