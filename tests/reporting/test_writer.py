"""python -m kdas_tf.report: Tables 1, 2 and 5 (Markdown and CSV) and the figures, for the tiny run and by hand."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kdas_tf.reporting import figures, results, writer
from kdas_tf.runtime import storage
from conftest import ROOT

FILES = ["search.md", "search.csv", "table1.md", "table1.csv", "table2.md", "table2.csv", "table5.md", "table5.csv",
         "final_accuracy_vs_parameters.png", "accuracy_vs_parameters.png", "reward_over_trials.png", "teacher_agreement.png", "report.md"]


def read_csv(path):
    with open(path) as f:
        return list(csv.reader(f))


def test_the_pareto_front_is_what_no_smaller_trial_beats():
    rng = np.random.default_rng(0)
    points = [(int(p), float(a)) for p, a in zip(rng.integers(1, 30, 60), rng.random(60).round(2))]
    front = figures.pareto_front(points)
    # independent definition: a point is on the front when every point at most as large is strictly worse
    expected = sorted({(p, a) for p, a in points
                       if all(b < a for q, b in points if q <= p and (q, b) != (p, a))})
    assert front == expected
    assert figures.pareto_front([]) == []


SUMMARY = {
    "teacher": {"num_teachers": 3, "network": "resnet8", "parameters_per_member": 1000,
                "ensemble_test_top1": 0.9, "ensemble_test_top1_by_size": [0.8, 0.85, 0.9],
                "train_members_correct_histogram": [0.05, 0.05, 0.1, 0.8], "member_train_top1_mean": 0.8833},
    "final": {"kdas_od": {"architecture": "resnet8:conv3x3/skip/skip", "val": {"top1": 0.9}, "test": {"top1": 0.89},
                          "parameters": 1500},
              "student_kd": {"architecture": "resnet8", "val": {"top1": 0.86}, "test": {"top1": 0.84},
                             "parameters": 1000}},
    "backbone": "resnet8", "search_loss": "od", "budget": 2000, "backbone_parameters": 1000,
}


def test_table1_sets_the_kd_student_against_the_full_ensemble():
    rows = writer.table1_rows(SUMMARY)
    assert [r[0] for r in rows] == [1, 2, 3]
    assert [r[1] for r in rows] == pytest.approx([80.0, 85.0, 90.0])
    assert rows[0][2:] == (None, None) and rows[1][2:] == (None, None)
    assert rows[2][2:] == pytest.approx((84.0, 6.0))
    older = {**SUMMARY, "teacher": {k: v for k, v in SUMMARY["teacher"].items() if k != "ensemble_test_top1_by_size"}}
    assert [r[1] for r in writer.table1_rows(older)] == [None, None, pytest.approx(90.0)]


def test_table5_lists_the_members_right_from_all_to_none():
    columns = writer.table5_columns(SUMMARY)
    (row,) = writer.table5_rows(SUMMARY)
    assert columns[1:5] == ("3 right %", "2 right %", "1 right %", "0 right %")
    assert row[0] == "3 x resnet8" and list(row[1:5]) == pytest.approx([80.0, 10.0, 5.0, 5.0])
    text = writer.csv_text(columns, [row])
    assert list(csv.reader(text.splitlines()))[1][1:5] == ["80.0", "10.0", "5.0", "5.0"]


@pytest.mark.slow
def test_the_report_command_writes_every_table_and_figure(tiny_run):
    workdir, _ = tiny_run
    run = subprocess.run([sys.executable, "-m", "kdas_tf.report", f"--workdir={workdir}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    out = os.path.join(workdir, "report")
    assert sorted(os.listdir(out)) == sorted(FILES)
    summary = storage.read_json(os.path.join(workdir, "results.json"))
    teacher = summary["teacher"]

    table1 = read_csv(os.path.join(out, "table1.csv"))
    assert [r[0] for r in table1[1:]] == ["1", "2"]
    assert [float(r[1]) for r in table1[1:]] == pytest.approx([100 * a for a in teacher["ensemble_test_top1_by_size"]])
    assert float(table1[2][1]) == pytest.approx(100 * teacher["ensemble_test_top1"])

    # Table 2, cell by cell, against results.json (the tiny run: --student_loss=ce --final_loss=kd,od).
    student = summary["final"]["student_ce"]
    expected = [
        (f"Teacher ({teacher['num_teachers']} x {teacher['network']})", "-", "CE", None,
         teacher["ensemble_test_top1"], teacher["num_teachers"] * teacher["parameters_per_member"]),
        (f"Student {summary['backbone']}", "-", "CE", student["val"]["top1"], student["test"]["top1"],
         student["parameters"]),
    ] + [(f"KDAS {found['architecture']}", summary["search_loss"].upper(), loss.upper(), found["val"]["top1"],
          found["test"]["top1"], found["parameters"])
         for loss, found in ((loss, summary["final"][f"kdas_{loss}"]) for loss in ("kd", "od"))]
    table2 = read_csv(os.path.join(out, "table2.csv"))
    assert table2[0] == list(results.TABLE2_COLUMNS)
    assert len(table2) == 1 + len(expected)
    markdown = [line.strip("|").split("|") for line in open(os.path.join(out, "table2.md")) if line.startswith("| ")][1:]
    assert len(markdown) == len(expected)
    for row, cells, (name, search_loss, loss, val, test, parameters) in zip(table2[1:], markdown, expected):
        cells = [c.strip() for c in cells]
        assert row[:3] == cells[:3] == [name, search_loss, loss]
        if val is None:
            assert (row[3], cells[3]) == ("", "-")
        else:
            assert float(row[3]) == pytest.approx(100 * val) and cells[3] == f"{100 * val:.2f}"
        assert float(row[4]) == pytest.approx(100 * test) and cells[4] == f"{100 * test:.2f}"
        assert int(row[5]) == parameters and cells[5] == f"{parameters / 1e6:.3f}M"

    table5 = read_csv(os.path.join(out, "table5.csv"))
    assert table5[0][1:4] == ["2 right %", "1 right %", "0 right %"]
    assert sum(float(v) for v in table5[1][1:4]) == pytest.approx(100.0)

    for name in FILES:
        assert os.path.getsize(os.path.join(out, name)) > 0, name
        if name.endswith(".png"):
            image = tf.io.decode_png(open(os.path.join(out, name), "rb").read())
            assert image.shape[0] > 300 and image.shape[1] > 600 and float(tf.math.reduce_std(tf.cast(image, tf.float32))) > 10
    index = open(os.path.join(out, "report.md")).read()
    assert "![accuracy vs parameters](accuracy_vs_parameters.png)" in index and summary["found_architecture"] in index


def run_with(kind, rewards):
    """SUMMARY as a finished search with `kind` controller and these trial rewards (the best is found)."""
    trials = [{"trial_id": str(i), "tuner_id": None, "status": "COMPLETED", "val_top1": r, "parameters": 1000 + i,
               "round": 0, "message": None,
               "architecture": f"resnet8:conv3x3/skip/{'skip+' * i}skip"} for i, r in enumerate(rewards)]
    found = max(trials, key=lambda t: t["val_top1"])["architecture"]
    return {**SUMMARY, "trials": trials, "found_architecture": found, "exported": "final/kdas_od",
            "controller": {"kind": kind, "trial_updates": 0, "repeated_samples": 0, "repeat_updates": 0}}


def test_the_report_names_the_controller_and_sets_a_random_search_beside_the_lstm_one(tmp_path):
    lstm, random = tmp_path / "lstm", tmp_path / "random"
    storage.write_json(str(lstm / "results.json"), run_with("lstm", [0.5, 0.7, 0.6]))
    storage.write_json(str(random / "results.json"), run_with("random", [0.4, 0.5]))
    writer.write_report(str(lstm), compare=[str(random)])
    rows = read_csv(str(lstm / "report" / "search.csv"))
    assert rows[0] == list(writer.SEARCH_COLUMNS)
    assert [r[:4] for r in rows[1:]] == [["lstm", "lstm", "0.002M", "3"], ["random", "random", "0.002M", "2"]]
    assert [float(r[4]) for r in rows[1:]] == pytest.approx([70.0, 50.0])
    assert rows[1][6:] == ["resnet8:conv3x3/skip/skip+skip", "0.001M"]
    assert "The search: controller" in (lstm / "report" / "report.md").read_text()
    alone = writer.search_rows([("old", {**run_with("lstm", [0.5]), "controller": {}})])
    assert alone[0][1] == "lstm"  # a run made before --controller existed searched with the LSTM


def test_the_final_rows_figure_has_every_row_of_the_run_and_the_found_models_of_the_others():
    main = {**run_with("lstm", [0.5]), "final": {
        **SUMMARY["final"], "manmade_resnet14_od": {"architecture": "resnet14", "val": {"top1": 0.88},
                                                     "test": {"top1": 0.87, "top1_std": 0.01}, "parameters": 1700}}}
    random = {**run_with("random", [0.4]), "final": {
        "kdas_od": {**SUMMARY["final"]["kdas_od"], "test": {"top1": 0.8}},
        "student_kd": SUMMARY["final"]["student_kd"]}}  # another run's plain student is the same row: left out
    points = writer.final_points([("main", main), ("baseline", random)])
    assert sorted((p["kind"], p["loss"], p["parameters"], p["test_top1"], p["test_top1_std"]) for p in points) == [
        ("KDAS", "od", 1500, 0.89, 0.0), ("baseline (random)", "od", 1500, 0.8, 0.0),
        ("man-made resnet14", "od", 1700, 0.87, 0.01), ("student resnet8", "kd", 1000, 0.84, 0.0)]


def test_a_run_without_results_is_refused_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "kdas_tf.report", f"--workdir={tmp_path}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        f"error: --workdir={tmp_path} has no results.json: finish the run first "
        "(rerun the same python -m kdas_tf.search command; it resumes)")


def test_the_report_says_why_its_model_was_served(tmp_path):
    decision = {"row": "kdas_od", "tied_on_validation": ["kdas_ce", "kdas_od"], "decided_by": "loss order od > kd > ce"}
    storage.write_json(str(tmp_path / "results.json"), {**run_with("lstm", [0.5]), "serving": decision})
    writer.write_report(str(tmp_path))
    index = (tmp_path / "report" / "report.md").read_text()
    assert "(decided by loss order od > kd > ce; tied with kdas_ce)" in index
    assert writer.served_because(run_with("lstm", [0.5])) == ""  # runs made before the record


def latency_trials():
    """Three finished trials of two rounds and an unfinished one, each with its predicted latency (ns)."""
    costs = [(1000, 25_000, 0.5, 0), (1100, 22_000, 0.75, 0), (1200, 28_000, 0.625, 1), (1300, 29_000, None, 1)]
    return [{"trial_id": str(i), "tuner_id": None, "status": "COMPLETED", "val_top1": reward, "parameters": parameters,
             "latency_ns": latency, "round": round_index, "message": None,
             "architecture": f"resnet8:conv3x3/skip/{'skip+' * i}skip"}
            for i, (parameters, latency, reward, round_index) in enumerate(costs)]


def test_the_trials_figure_is_drawn_in_the_budgets_metric():
    trials = latency_trials()
    data = figures.accuracy_vs_cost_data(trials, metric="latency", budget=30_000, found=trials[1]["architecture"],
                                         measured_ms=0.024)
    assert data["rounds"] == {0: [(0.025, 50.0), (0.022, 75.0)], 1: [(0.028, 62.5)]}  # ms, %; unfinished left out
    assert data["front"] == [(0.022, 75.0), (0.030, 75.0)]  # the fastest trial beats the others, drawn out to M
    assert data["found"] == (0.022, 75.0) and data["measured"] == (0.024, 75.0)
    by_size = figures.accuracy_vs_cost_data(trials, budget=None, found=trials[1]["architecture"])
    assert by_size["rounds"][0] == [(0.001, 50.0), (0.0011, 75.0)] and by_size["measured"] is None
    assert by_size["front"] == [(0.001, 50.0), (0.0011, 75.0), (0.0011, 75.0)]  # no budget to draw it out to
    older = [{k: v for k, v in t.items() if k != "latency_ns"} for t in trials]  # recorded before the key
    assert figures.accuracy_vs_cost_data(older, metric="latency")["rounds"] == {}


def test_a_latency_run_reports_its_figure_in_milliseconds_and_its_found_network_measured(tmp_path):
    trials = latency_trials()
    found = {"architecture": trials[1]["architecture"], "predicted_ms": 0.022, "measured_ms": 0.0312,
             "interval_ms": [0.0301, 0.0336], "budget_ms": 0.03, "within_budget": True, "backbone_table_ms": 0.02,
             "backbone_measured_ms": 0.021, "format": "tflite_int8", "threads": 1, "measured": "exported file",
             "times_backbone": 1.45, "at_table_speed_ms": 0.029, "at_table_speed_interval_ms": [0.0288, 0.0292],
             "within_budget_as_measured": False}
    summary = {**run_with("lstm", [0.5]), "trials": trials, "found_architecture": trials[1]["architecture"],
               "budget_metric": "latency", "budget": 30_000, "backbone_cost": 20_000, "latency": found}
    storage.write_json(str(tmp_path / "latency" / "results.json"), summary)
    written = writer.write_report(str(tmp_path / "latency"))
    names = {os.path.basename(path) for path in written}
    assert {"accuracy_vs_parameters.png", "accuracy_vs_latency.png"} <= names and "accuracy_vs_macs.png" not in names
    index = (tmp_path / "latency" / "report" / "report.md").read_text()
    assert (f"Found network {trials[1]['architecture']} (exported file, tflite_int8, 1 thread(s)): predicted "
            "0.0220 ms; measured 0.0312 ms [0.0301, 0.0336], 1.450x the backbone timed beside it (0.0210 ms now, "
            "0.0200 ms in the table), so 0.0290 ms [0.0288, 0.0292] at the table's speed; budget 0.0300 ms: within "
            "it at the table's speed, over it as measured now.") in index
    assert "![accuracy vs latency](accuracy_vs_latency.png)" in index

    storage.write_json(str(tmp_path / "size" / "results.json"), run_with("lstm", [0.5]))
    names = {os.path.basename(path) for path in writer.write_report(str(tmp_path / "size"))}
    assert "accuracy_vs_parameters.png" in names and not names & {"accuracy_vs_latency.png", "accuracy_vs_macs.png"}
    assert "Found network" not in (tmp_path / "size" / "report" / "report.md").read_text()
