"""The Fashion-MNIST study (docs/fashion_mnist.md) in one command: every run, in order, each resumed or skipped.

    python tools/fashion_mnist_study.py --dry_run        # every run with its price here, nothing trains
    python tools/fashion_mnist_study.py                  # run what is not finished (resumes after a kill)
    python tools/fashion_mnist_study.py --stage=regimes --commit   # one stage, committing each run's JSON

A run is one `python -m kdas_tf.<command>` in its own work directory under --runs; it is finished when its
result JSON is in docs/fashion_mnist/study/ (copied there with its log as it ends, and committed with
--commit), so a study spread over several sessions picks up where the committed files stop. The decisions
between stages (which teacher regime, how many search epochs) are made by code from committed JSON, by the
rules docs/fashion_mnist.md states before any result (fashion_mnist_study_plan.py); the page's tables,
the claims and the figures come from the kept runs (fashion_mnist_study_report.py).
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

import fashion_mnist_study_plan as plan
import fashion_mnist_study_report as report


def execute(run, python, commit):
    """Run (or resume) one command, then keep its result JSON and log in docs/; returns its exit code."""
    os.makedirs(run.workdir, exist_ok=True)
    log_path = os.path.join(run.workdir, "study.log")
    started = time.time()
    print(f"[{time.strftime('%H:%M:%S')}] {run.stage}/{run.name}: python -m {' '.join(run.argv)} "
          f"(about {run.seconds / 60:.0f} min here, idle)", flush=True)
    with open(log_path, "a") as log:
        code = subprocess.call([python, "-m", *run.argv], cwd=plan.ROOT, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        print(f"{run.stage}/{run.name} stopped with exit code {code}: see {log_path}; rerun to resume", flush=True)
        return code
    result = json.load(open(os.path.join(run.workdir, run.result)))
    commit_id = subprocess.run(["git", "rev-parse", "HEAD"], cwd=plan.ROOT, capture_output=True, text=True).stdout
    result["study"] = {"command": "python -m " + " ".join(run.argv), "code": commit_id.strip(),
                       "seconds": round(time.time() - started, 1),
                       "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "load_average": os.getloadavg()}
    plan.write_json(run.kept, result)
    shutil.copyfile(log_path, run.kept[:-5] + ".log")
    print(f"{run.stage}/{run.name} done in {(time.time() - started) / 60:.1f} min: {run.kept}", flush=True)
    if commit:
        plan.regime_decision()  # made as soon as its runs are kept, and committed with them
        # the run's JSON and log, and any decision made
        subprocess.check_call(["git", "add", plan.STUDY], cwd=plan.ROOT)
        subprocess.check_call(["git", "commit", "-q", "-m", f"Study: {run.stage}/{run.name} finished "
                               f"({(time.time() - started) / 60:.0f} min), its results kept"], cwd=plan.ROOT)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry_run", action="store_true", help="print every run with its price; train nothing")
    parser.add_argument("--stage", default=None, help="run only this stage (regimes, reward, baselines, searches)")
    parser.add_argument("--runs", default=os.path.join(plan.ROOT, "runs", "fashion_mnist_study"),
                        help="where the work directories go")
    parser.add_argument("--commit", action="store_true", help="git-commit each run's kept JSON and log as it ends")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--report", action="store_true",
                        help="print every table of docs/fashion_mnist.md whose runs are kept; train nothing")
    args = parser.parse_args()
    if args.report:
        for title, markdown in report.report({stage: plan.read_kept(stage) for stage in plan.STAGES}):
            print(f"{title}\n\n{markdown}")
        return 0
    runs = [run for run in plan.named_runs(args.runs) if args.stage in (None, run.stage)]
    if args.dry_run:
        left = [run for run in runs if not run.finished]
        for run in runs:
            print(f"{'done' if run.finished else f'{run.seconds / 60:5.0f} min'}  {run.stage}/{run.name}: "
                  f"python -m {' '.join(run.argv)}")
        named = {run.stage for run in runs}
        later = {stage: hours for stage, hours in plan.unnamed_hours().items() if stage not in named}
        print(f"{len(runs) - len(left)} of {len(runs)} named runs done; {sum(r.seconds for r in left) / 3600:.1f} h "
              "left of them at the previous run's speed on this machine, idle")
        for stage, hours in later.items():
            print(f"  then {stage}: about {hours:.1f} h (named once the decisions before it are kept)")
        decision = plan.regime_decision()
        print(f"regime: {decision['regime']} ({decision['why']})" if decision else
              "regime: decided when every regime's teachers are kept")
        return 0
    for run in runs:
        if not run.finished and execute(run, args.python, args.commit) != 0:
            return 2
    decision = plan.regime_decision()
    if decision:
        print(f"regime: {decision['regime']}: {decision['why']}")
    kept = {stage: plan.read_kept(stage) for stage in plan.STAGES}
    table = report.claims_table(kept)
    if table is not None:
        by_search = report.search_level_claims(kept)
        plan.write_json(os.path.join(plan.STUDY, "claims.json"), table)
        plan.write_json(os.path.join(plan.STUDY, "claims_by_search.json"), by_search)
        with open(os.path.join(plan.STUDY, "claims.md"), "w") as file:
            file.write(report.claims_markdown(table) + "\nChecked with one number per search (not in the plan):\n\n"
                       + report.claims_markdown(by_search))
        report.draw_figures(kept, plan.STUDY)
        print(report.claims_markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
