"""A finished run's tables and figures, in the paper's shapes (python -m kdas_tf.report's library).

Writes under WORKDIR/report/ (or --output):
- table1.md/.csv: the teacher ensemble of the first k members (k = 1..N) against the
  KD student (the paper's Table 1: the gap a same-size student cannot close);
- table2.md/.csv: teacher, plain student and the found model with each L_T (Table 2);
- table5.md/.csv: the share of training examples that k members classify correctly (Table 5);
- final_accuracy_vs_parameters.png: every final row's test top-1 (mean ± std of its seeds) against its size,
  with the found models of the --compare runs;
- accuracy_vs_parameters.png (every trial's validation top-1, the budget line, the Pareto front), and for a
  MACs or latency budget accuracy_vs_macs.png or accuracy_vs_latency.png (the same in the budget's metric; the
  found network's measured latency beside its prediction), reward_over_trials.png, teacher_agreement.png; and
  report.md with all of them (a latency budget's run: the found network's predicted and measured latency).
- the deployment table of each export made with LiteRT formats (export/deployment.json, exports/NAME/...),
  in report.md;
- search.md/.csv: which controller searched, its trials and rewards; with --compare=OTHER_WORKDIR,...
  each other run's search beside it, and their rewards in reward_over_trials.png (an LSTM search
  against a --controller=random one under the same budget, trials and reward).

Everything comes from the run's results.json, which holds the teacher report
(including the k-member ensemble accuracies, computed where the members' test
logits already are) and every trial. The report thus needs neither the data nor
the models: it runs anywhere the work directory is copied, in a second.
"""

import csv
import io
import os

from kdas_tf.reporting import figures, results
from kdas_tf.runtime import schema, storage
from kdas_tf.runtime.rows import row_kind_and_loss
from kdas_tf.errors import UserError
from kdas_tf.runtime.workdir import Workdir

TABLE1_COLUMNS = ("N", "teacher test top-1 %", "student (KD) test top-1 %", "gap")
SEARCH_COLUMNS = ("run", "controller", "budget", "trials", "best val top-1 %", "mean val top-1 %",
                  "found architecture", "parameters")


def load_summary(workdir):
    """The run's results.json, or a one-line error that says how to get it."""
    path = Workdir(workdir).results
    if not os.path.exists(path):
        raise UserError(f"--workdir={workdir} has no results.json: finish the run first "
                                "(rerun the same python -m kdas_tf.search command; it resumes)")
    return schema.read_run_results(path)


def table1_rows(summary):
    """(N, ensemble of the first N members %, KD student %, gap) for N = 1..members; the student is the run's own.

    Runs made before the k-member accuracies were recorded give only the full
    ensemble's row; rerunning their search command (which redoes nothing else)
    records them.
    """
    teacher = summary["teacher"]
    by_size = teacher.get("ensemble_test_top1_by_size") or [None] * (teacher["num_teachers"] - 1) + [
        teacher["ensemble_test_top1"]]
    student = summary["final"].get("student_kd")
    rows = []
    for k, accuracy in enumerate(by_size, start=1):
        teacher_percent = None if accuracy is None else 100 * accuracy
        student_percent = 100 * student["test"]["top1"] if student and k == len(by_size) else None
        gap = teacher_percent - student_percent if student_percent is not None and teacher_percent is not None else None
        rows.append((k, teacher_percent, student_percent, gap))
    return rows


def table5_columns(summary):
    members = summary["teacher"]["num_teachers"]
    return ("teacher", *(f"{k} right %" for k in range(members, -1, -1)), "member train top-1 %")


def table5_rows(summary):
    """One row: the members-right histogram from N down to 0 members, and a member's training accuracy."""
    teacher = summary["teacher"]
    histogram = teacher["train_members_correct_histogram"]
    return [(f"{teacher['num_teachers']} x {teacher['network']}", *(100 * h for h in reversed(histogram)),
             100 * teacher["member_train_top1_mean"])]


def controller_kind(summary):
    """The controller a run searched with; runs made before --controller existed used the LSTM."""
    return summary.get("controller", {}).get("kind", "lstm")


def search_rows(runs):
    """One row per (name, summary): the controller, budget, trials, best and mean reward, and what it found."""
    rows = []
    for name, summary in runs:
        rewards = [100 * t["val_top1"] for t in summary["trials"] if t["val_top1"] is not None]
        found = next((t for t in summary["trials"] if t["architecture"] == summary["found_architecture"]), None)
        rows.append((name, controller_kind(summary), results.budget_text(summary), len(rewards),
                     max(rewards, default=None), sum(rewards) / len(rewards) if rewards else None,
                     summary["found_architecture"], results.millions(found["parameters"]) if found else None))
    return rows


def csv_text(columns, rows):
    """CSV with full-precision numbers and empty cells where the Markdown shows '-'."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else round(v, 6) if isinstance(v, float) else v for v in row])
    return buffer.getvalue()


def tables(summary, runs):
    """{name: (title, columns, rows, markdown)} for Tables 1, 2 and 5 and the searches of `runs` [(name, summary)]."""
    teacher = summary["teacher"]
    table1, table5, search = table1_rows(summary), table5_rows(summary), search_rows(runs)
    return {
        "search": ("The search: controller, trials and rewards", SEARCH_COLUMNS, search,
                   results.markdown_table(SEARCH_COLUMNS, search)),
        "table1": ("Table 1: teacher ensemble of N members against the KD student (test top-1 %)",
                   TABLE1_COLUMNS, table1, results.markdown_table(TABLE1_COLUMNS, table1)),
        "table2": ("Table 2: accuracy % and memory of the teacher, the student and the found model",
                   results.TABLE2_COLUMNS, results.table2_rows(summary), results.table2_markdown(summary)),
        "table5": (f"Table 5: training examples by how many of the {teacher['num_teachers']} members are right",
                   table5_columns(summary), table5, results.markdown_table(table5_columns(summary), table5)),
    }


def final_points(runs):
    """Every final row of `runs` [(name, summary)] as a point of test top-1 against parameters: the plain
    student, the man-made networks and the found model of the first run, and the found models of the others
    (labelled with their run and controller)."""
    points = []
    for index, (name, run) in enumerate(runs):
        for row_name, row in run["final"].items():
            kind, loss = row_kind_and_loss(row_name)
            if index and kind != "kdas":
                continue
            label = {"student": f"student {run['backbone']}", "manmade": f"man-made {row['architecture']}",
                     "kdas": "KDAS" if not index else f"{name} ({controller_kind(run)})"}[kind]
            points.append({"kind": label, "loss": loss, "parameters": row["parameters"],
                           "test_top1": row["test"]["top1"], "test_top1_std": row["test"].get("top1_std", 0.0)})
    return points


def figure_files(summary, runs):
    """{file name: PNG bytes}; reward over trials shows every run of `runs` [(name, summary)]. A MACs or latency
    budget's run has its trials against that cost too (accuracy_vs_macs.png, accuracy_vs_latency.png)."""
    teacher = summary["teacher"]
    metric = summary.get("budget_metric", "parameters")
    found = summary["found_architecture"]
    files = {
        "final_accuracy_vs_parameters.png": figures.test_accuracy_vs_parameters(
            final_points(runs), "Final rows: test accuracy against size"),
        "accuracy_vs_parameters.png": figures.accuracy_vs_cost(
            summary["trials"], budget=summary["budget"] if metric == "parameters" else None,
            backbone_cost=summary["backbone_parameters"], found=found),
    }
    if metric != "parameters":
        files[f"accuracy_vs_{metric}.png"] = figures.accuracy_vs_cost(
            summary["trials"], metric=metric, budget=summary["budget"], backbone_cost=summary["backbone_cost"],
            found=found, measured_ms=(summary.get("latency") or {}).get("at_table_speed_ms"))
    files["reward_over_trials.png"] = figures.reward_over_trials(
        [(f"{name} ({controller_kind(run)})", run["trials"]) for name, run in runs])
    files["teacher_agreement.png"] = figures.teacher_agreement(teacher["train_members_correct_histogram"],
                                                              network=teacher["network"])
    return files


def served_because(summary):
    """' (decided by ...; tied with ...)' from results.json's serving record; empty for runs made before it."""
    decision = summary.get("serving")
    if not decision:
        return ""
    others = [row for row in decision["tied_on_validation"] if row != decision["row"]]
    return f" (decided by {decision['decided_by']}" + (f"; tied with {', '.join(others)}" if others else "") + ")"


def write_report(workdir, output=None, compare=()):
    """Write every table (Markdown and CSV), figure and report.md; returns the paths written.

    compare: other runs' work directories, whose searches are shown beside this one's.
    """
    for path in (workdir, *compare):
        if not path or not os.path.isdir(path):
            raise UserError(f"{path!r} is not a directory: give a run's work directory (--workdir, --compare)")
    summary = load_summary(workdir)
    runs = [(os.path.basename(os.path.abspath(path)), load_summary(path)) for path in (workdir, *compare)]
    output = output or Workdir(workdir).report
    written = []
    sections = [f"# KDAS run report: {os.path.basename(os.path.abspath(workdir))}\n",
                f"Found architecture `{summary['found_architecture']}`; served model `{summary['exported']}`"
                f"{served_because(summary)}.\n"]
    if summary.get("latency"):
        sections.append(results.latency_line(summary["latency"]) + "\n")
    for name, (title, columns, rows, markdown) in tables(summary, runs).items():
        for path, text in ((f"{name}.md", markdown), (f"{name}.csv", csv_text(columns, rows))):
            storage.write_text(os.path.join(output, path), text)
            written.append(os.path.join(output, path))
        sections.append(f"## {title}\n\n{markdown}")
    for name, path in Workdir(workdir).deployment_tables():
        deployment = storage.read_json(path)
        calibration = deployment.get("calibration")  # None, or missing in files written before it was recorded
        calibrated = (f"; int8 calibrated on {calibration['images']} {calibration['split']} images"
                      if calibration else "")
        sections.append(f"## Deployment: {name}/ ({deployment['test_examples']} test images{calibrated}; latency: "
                        f"median of {deployment['latency']['runs']} single-image runs on this CPU)\n\n"
                        f"{results.deployment_markdown(deployment['rows'])}")
    for name, png in figure_files(summary, runs).items():
        storage.write_bytes(os.path.join(output, name), png)
        written.append(os.path.join(output, name))
        sections.append(f"![{name[:-4].replace('_', ' ')}]({name})\n")
    storage.write_text(os.path.join(output, "report.md"), "\n".join(sections))
    written.append(os.path.join(output, "report.md"))
    return written
