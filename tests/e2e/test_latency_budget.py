"""A whole tiny digits search under --budget_metric=latency, priced by a latency table given as a file (made-up
numbers: the search times nothing), through the Python API as pipeline.run runs it: every trial fits the budget in
the table's prediction, results.json says what the budget counted, the work directory keeps its table, and the
exported int8 student is measured against its prediction and the budget (once: a rerun reuses the measurement)."""

import pytest

from conftest import tiny_config
from kdas_tf import pipeline
from kdas_tf.deploy import latency_table
from kdas_tf.errors import UserError
from kdas_tf.reporting import results
from kdas_tf.runtime import storage
from kdas_tf.runtime.workdir import Workdir

pytestmark = pytest.mark.slow


def measure(described):  # 1 us per op and area unit over a 20 us backbone
    return {key: 0.02 if d[0] == "network" else 0.01 + 0.001 * d[1][0] * d[1][1] / 16 * (d[2] not in
            ("no_op", "one_add")) + 0.002 * (d[2] == "one_add") for key, d in described.items()}


def given_table(folder):
    table = latency_table.measure_table(latency_table.Target("resnet8", 10, (8, 8, 1)), measure=measure)
    storage.write_json(str(folder / "phone.json"), table)
    return table


def test_a_latency_search_refused_before_its_claim_leaves_no_work_directory(tmp_path):
    """The budget is resolved, its table read, before the claim; the table is kept only once the run holds the
    directory, so a run refused before that (a batch larger than the data) creates nothing."""
    given_table(tmp_path)
    workdir = tmp_path / "run"
    with pytest.raises(UserError, match="batch"):
        pipeline.run(tiny_config(str(workdir), "--budget_metric=latency", "--budget=0.03ms", "--batch_size=5000",
                                 f"--latency_table={tmp_path / 'phone.json'}"))
    assert not workdir.exists()


def test_a_latency_budgeted_search_keeps_every_trial_within_the_tables_prediction(tmp_path, monkeypatch):
    table = given_table(tmp_path)
    workdir = str(tmp_path / "run")
    flags = tiny_config(workdir, "--budget_metric=latency", "--budget=0.03ms", "--trials_per_round=3",
                        f"--latency_table={tmp_path / 'phone.json'}", "--formats=saved_model,tflite_int8")
    summary = pipeline.run(flags)
    assert summary["budget_metric"] == "latency" and summary["budget"] == 30_000
    assert summary["backbone_cost"] == 20_000 and summary["backbone_parameters"] == 75_002
    trained = [t for t in summary["trials"] if t["val_top1"] is not None]
    assert len(trained) == 3
    for trial in trained:
        predicted_ns = round(1e6 * latency_table.predict_ms(table, trial["architecture"]))
        assert trial["latency_ns"] == predicted_ns <= 30_000
    assert summary["found"]["latency_ns"] <= 30_000
    assert "Budget M = 0.030 ms (latency); backbone resnet8 = 0.020 ms, 0.075M parameters." in \
        results.table2_markdown(summary)
    assert storage.read_json(Workdir(workdir).latency_table)["backbone_ms"] == table["backbone_ms"]

    # The exported int8 file measured here (a real clock: only its consistency is asserted), the backbone beside it.
    found = summary["latency"]
    assert (found["architecture"], found["measured"], found["format"]) == (
        summary["found_architecture"], "exported file", "tflite_int8")
    assert found["predicted_ms"] == latency_table.predict_ms(table, summary["found_architecture"])
    assert found["budget_ms"] == 0.03 and found["within_budget_as_measured"] == (found["measured_ms"] <= 0.03)
    assert found["at_table_speed_ms"] == pytest.approx(found["times_backbone"] * 0.02)  # the given table's backbone
    assert found["within_budget"] == (found["at_table_speed_ms"] <= 0.03)
    low, high = found["interval_ms"]
    assert 0 < low <= found["measured_ms"] <= high and found["backbone_table_ms"] == 0.02
    assert found["backbone_measured_ms"] > 0
    run = Workdir(workdir)
    assert storage.read_json(run.found_latency) == found == storage.read_json(run.results)["latency"]

    def refuse(*args, **kwargs):
        raise AssertionError("the rerun measured again an export it had measured")

    monkeypatch.setattr(latency_table, "measure_turns", refuse)  # a rerun exports the same file again
    assert pipeline.run(flags)["latency"] == found
