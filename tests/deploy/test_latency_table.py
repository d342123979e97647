"""The latency table (--budget_metric=latency): its arithmetic, its cache in the work directory and its refusals,
with a made-up timer (no assertion here depends on this machine's speed); one real conversion of each kind of
model checks that the measuring path runs, and the prediction check is checked on made-up measurements."""

import dataclasses
import json
import math

import numpy as np
import pytest

from kdas_tf import models
from kdas_tf.deploy import latency_check, latency_table
from kdas_tf.deploy.latency_table import Target
from kdas_tf.errors import UserError
from kdas_tf.reporting import results, stats
from kdas_tf.models.mac_count import stage_shapes
from kdas_tf.runtime import storage

TARGET = Target("resnet8", 10, (8, 8, 1), "zero_pad", "tflite_int8", 1)
BACKBONE_MS = 0.5
OP_MS = {"conv3x3": 0.04, "conv5x5": 0.09, "sep3x3": 0.02, "sep5x5": 0.03, "maxpool3x3": 0.005,
         "avgpool3x3": 0.006}
OVERHEAD_MS, ADD_MS = 0.010, 0.002  # every invoke's, and one residual add's


def made_up_measure(described):
    """A timer of made-up latencies: an invoke's overhead, plus each add and op of the model, the ops scaled by the
    stage's area (so stages differ); a whole network is its backbone plus its ops' and adds'."""
    timed = {}
    for key, description in described.items():
        if description[0] == "network":
            timed[key] = BACKBONE_MS + predicted_extra(description[1])
            continue
        _, (height, width, _), kind = description
        adds = {"no_op": 1, "one_add": 2}.get(kind, 1)
        timed[key] = OVERHEAD_MS + adds * ADD_MS + OP_MS.get(kind, 0.0) * height * width / 64
    return timed


def predicted_extra(architecture):
    arch = models.as_architecture(architecture)
    shapes = stage_shapes(arch.backbone, TARGET.input_shape)
    return sum(OP_MS.get(op, 0.0) * h * w / 64 + (ADD_MS if op != "skip" else 0.0)
               for (h, w, _), stage in zip(shapes, arch.addons) for ops in stage for op in ops)


def refuse_to_measure(described):
    raise AssertionError(f"measured {sorted(described)} where the kept table should have served")


def test_an_op_costs_what_its_module_adds_to_an_empty_one_its_add_included():
    table = latency_table.measure_table(TARGET, measure=made_up_measure)
    assert table["backbone_ms"] == BACKBONE_MS and table["format"] == "tflite_int8" and table["threads"] == 1
    for (height, width, _), stage in zip(stage_shapes("resnet8", (8, 8, 1)), table["stages"]):
        assert stage["ops_ms"]["skip"] == 0
        for op, ms in OP_MS.items():
            assert stage["ops_ms"][op] == pytest.approx(ms * height * width / 64 + ADD_MS)  # the overhead is gone
    arch = "resnet8:conv3x3+sep5x5/maxpool3x3+skip/skip+skip"
    assert latency_table.predict_ms(table, arch) == pytest.approx(BACKBONE_MS + predicted_extra(arch), abs=1e-6)
    cost = latency_table.as_cost(table)  # the search's table, in integer nanoseconds
    assert cost.metric == "latency" and cost.base == 500_000 and cost.per_stage.dtype == np.int64
    assert cost.of(arch) == round(sum(cost.per_stage[s, models.ADDON_OPS.index(op)]
                                      for s, op in ((0, "conv3x3"), (0, "sep5x5"), (1, "maxpool3x3")))) + 500_000


def test_an_op_measured_faster_than_nothing_costs_nothing():
    def noisy(described):
        timed = made_up_measure(described)
        return {key: (timed[key] - 0.01 if described[key][-1] == "maxpool3x3" else timed[key]) for key in timed}

    table = latency_table.measure_table(TARGET, measure=noisy)
    assert all(stage["ops_ms"]["maxpool3x3"] == 0.0 for stage in table["stages"])


def test_the_table_is_kept_in_the_work_directory_and_reused_there(tmp_path):
    kept = str(tmp_path / "latency_table.json")
    measured = latency_table.resolve(TARGET, kept, measure=made_up_measure)
    assert storage.read_json(kept) == measured and measured["machine"] == latency_table.machine()
    assert latency_table.resolve(TARGET, kept, measure=refuse_to_measure) == measured


def test_the_dry_run_measures_but_keeps_nothing_and_a_finished_search_must_have_its_table(tmp_path):
    kept = str(tmp_path / "latency_table.json")
    latency_table.resolve(TARGET, kept, missing="measure", measure=made_up_measure)
    assert not (tmp_path / "latency_table.json").exists()
    with pytest.raises(UserError, match="latency_table.json is missing"):
        latency_table.resolve(TARGET, kept, missing="refuse", measure=refuse_to_measure)


def test_a_table_of_another_machine_is_refused_never_silently_reused(tmp_path):
    kept = str(tmp_path / "latency_table.json")
    table = latency_table.resolve(TARGET, kept, measure=made_up_measure)
    storage.write_json(kept, {**table, "machine": {**table["machine"], "cpu": "Cortex-A76", "cores": 8}})
    with pytest.raises(UserError, match=r"measured on another machine \(cpu 'Cortex-A76'.*pass --latency_table="):
        latency_table.resolve(TARGET, kept, measure=refuse_to_measure)
    # Reading a finished search prices nothing new: its table serves on any machine.
    assert latency_table.resolve(TARGET, kept, missing="refuse")["machine"]["cpu"] == "Cortex-A76"


@pytest.mark.parametrize("field, value", [("format", "tflite"), ("threads", 4), ("backbone", "resnet14"),
                                          ("input_shape", (28, 28, 1))])
def test_a_table_of_another_format_threads_or_network_is_refused(tmp_path, field, value):
    kept = str(tmp_path / "latency_table.json")
    latency_table.resolve(TARGET, kept, measure=made_up_measure)
    other = dataclasses.replace(TARGET, **{field: value})
    with pytest.raises(UserError, match=f"latency table of another run: {field} ") as error:
        latency_table.resolve(other, kept, measure=refuse_to_measure)
    assert "\n" not in str(error.value)


def test_a_table_measured_on_the_target_is_given_kept_and_the_search_keeps_to_it(tmp_path):
    target_table = latency_table.measure_table(TARGET, measure=made_up_measure)
    target_table["machine"] = {**target_table["machine"], "cpu": "Cortex-A76"}  # measured on the phone
    given = str(tmp_path / "phone.json")
    storage.write_json(given, target_table)
    kept = str(tmp_path / "run" / "latency_table.json")
    (tmp_path / "run").mkdir()
    used = latency_table.resolve(TARGET, kept, given, measure=refuse_to_measure)
    assert used["machine"]["cpu"] == "Cortex-A76" and used["source"].startswith("given: ")
    assert latency_table.resolve(TARGET, kept, measure=refuse_to_measure)["machine"]["cpu"] == "Cortex-A76"
    other = str(tmp_path / "other.json")
    storage.write_json(other, {**target_table, "backbone_ms": 0.7})
    with pytest.raises(UserError, match="is not the table .* was searched with"):
        latency_table.resolve(TARGET, kept, other, measure=refuse_to_measure)


def test_a_malformed_or_missing_table_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"format": "tflite", "threads": 0}))
    with pytest.raises(UserError, match="table.json") as error:
        latency_table.resolve(TARGET, None, str(path))
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="no such file; measure one on the target"):
        latency_table.resolve(TARGET, None, str(tmp_path / "absent.json"))


def test_the_check_reports_rank_correlation_and_relative_errors():
    table = latency_table.measure_table(TARGET, measure=made_up_measure)
    networks = latency_check.sample_architectures(table, 6, rounds=2, ops_per_addon=2)
    predicted = [latency_table.predict_ms(table, arch) for arch in networks]
    assert len(networks) == 6 and predicted == sorted(predicted) and predicted[0] < predicted[-1]  # across the range

    def ten_percent_slow_but_the_first(described):
        timed = made_up_measure(described)
        return {key: ms * (1.0 if key == "network1" else 1.1) for key, ms in timed.items()}

    result = latency_check.check_table(table, TARGET, networks, measure=ten_percent_slow_but_the_first)
    summary = result["summary"]
    assert summary["networks"] == 7 and result["rows"][0]["backbone"]  # the backbone measured again first
    assert summary["median_abs_relative_error"] == pytest.approx(1 - 1 / 1.1, abs=1e-6)
    assert summary["worst_abs_relative_error"] == pytest.approx(1 - 1 / 1.1, abs=1e-6)
    assert summary["median_relative_error"] == pytest.approx(1 / 1.1 - 1, abs=1e-6)  # under-predicts
    assert summary["spearman_rho"] < 1  # network1 (exact) now sits below the backbone's rank
    assert "Spearman's rho" in latency_check.markdown(result)


def test_one_real_model_of_each_kind_converts_and_times():
    """The measuring path as the search runs it, on the smallest shapes; its numbers are only checked to exist."""
    small = Target("resnet8", 10, (8, 8, 1), "zero_pad", "tflite_int8", 1)
    contents = {"network": latency_table.convert_model(("network", "resnet8:sep3x3/skip/skip"), small),
                "module": latency_table.convert_model(("module", (4, 4, 8), "conv3x3"), small)}
    calls = {key: latency_table.invoker(content, small.threads) for key, content in contents.items()}
    timed = latency_table.time_models(calls, turns=2, runs=3, warmup=1)
    assert set(timed) == {"network", "module"}
    assert all(len(turns) == 2 and all(math.isfinite(ms) and ms > 0 for ms in turns) for turns in timed.values())


def test_the_models_of_a_group_take_turns_in_alternating_order():
    """Each turn times every model once, in the group's order on even turns and reversed on odd ones."""
    order = []
    calls = {key: (lambda key=key: order.append(key)) for key in ("a", "b", "c")}
    timed = latency_table.time_models(calls, turns=3, runs=1, warmup=0)
    assert order == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert {key: len(turns) for key, turns in timed.items()} == {"a": 3, "b": 3, "c": 3}


LOAD_MS = [0.0, 0.3, 0.0, 0.05, 0.0, 0.9, 0.0]  # what another process adds to every invoke of a turn


def loaded_turns(described):
    """made_up_measure in seven turns, each turn's models slowed alike by that turn's load."""
    return {key: [ms + load for load in LOAD_MS] for key, ms in made_up_measure(described).items()}


def test_an_op_is_priced_turn_by_turn_so_a_load_that_hits_a_whole_turn_cancels():
    """An op's entry is computed within each turn (its module less the empty one, plus one add) before the median
    over turns: a load that slows a whole turn leaves every turn's difference, hence the interval, exact. Computed
    from each model's median over turns instead, the interval would not exist and the difference would still hold
    only because the medians fall in the same unloaded turns. Tolerance: float rounding (1e-9 ms)."""
    table = latency_table.measure_table(TARGET, measure=loaded_turns)
    assert table["backbone_ms"] == pytest.approx(BACKBONE_MS + 0.0)  # the median turn is unloaded
    _, low, high, _ = stats.median_interval([BACKBONE_MS + load for load in LOAD_MS * 3])  # its turns of 3 stages
    assert table["backbone_interval_ms"] == pytest.approx([low, high]) and high > low
    for (height, width, _), stage in zip(stage_shapes("resnet8", (8, 8, 1)), table["stages"]):
        for op, ms in OP_MS.items():
            cost = ms * height * width / 64 + ADD_MS
            assert stage["ops_ms"][op] == pytest.approx(cost, abs=1e-9)
            assert stage["ops_interval_ms"][op] == pytest.approx([cost, cost], abs=1e-9)
    assert table["method"]["turns"] == latency_table.TURNS
    assert "to" in latency_table.markdown(table)  # each entry printed with its interval


def test_the_check_reports_each_networks_interval_over_turns():
    """A network's measured latency in the check is the median over turns with the order-statistic interval."""
    table = latency_table.measure_table(TARGET, measure=made_up_measure)
    result = latency_check.check_table(table, TARGET, ["resnet8:conv3x3/skip/skip"], measure=loaded_turns)
    for row in result["rows"]:
        true_ms = BACKBONE_MS + predicted_extra(row["architecture"])
        assert row["measured_ms"] == pytest.approx(true_ms)
        assert row["measured_interval_ms"] == pytest.approx([true_ms, true_ms + 0.9])
        assert row["relative_error"] == pytest.approx(0.0, abs=1e-9)


def test_the_backbone_takes_its_turns_in_every_stages_group_so_a_load_of_one_part_cannot_set_it():
    """A load during the first group's seconds (another process's burst) slows all of that group's turns. The
    backbone's median is over its turns in all three groups, so it stays the unloaded latency; measured alone in a
    group of its own (the first version), it was the loaded one. The ops' entries cancel the load either way."""
    calls = []

    def burst_during_the_first_group(described):
        calls.append(sorted(described))
        load = 0.3 if len(calls) == 1 else 0.0
        return {key: [ms + load] * 7 for key, ms in made_up_measure(described).items()}

    table = latency_table.measure_table(TARGET, measure=burst_during_the_first_group)
    assert len(calls) == 3 and all("backbone" in keys for keys in calls)
    assert table["backbone_ms"] == pytest.approx(BACKBONE_MS)
    assert table["stages"][0]["ops_ms"]["conv3x3"] == pytest.approx(OP_MS["conv3x3"] + ADD_MS)


def test_a_file_is_timed_as_it_is(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"TFL3 any flatbuffer")
    assert latency_table.convert_model(("file", str(path)), TARGET) == b"TFL3 any flatbuffer"  # never converted


def turns_measure(timings, calls):
    """A made-up measure_turns: timings {key: [ms of each turn]} for every key, each call's descriptions recorded."""
    def measure(described):
        calls.append(described)
        return {key: list(timings[key]) for key in described}
    return measure


FOUND = "resnet8:conv3x3+sep5x5/maxpool3x3+skip/skip+skip"


def test_the_found_network_is_measured_beside_the_backbone_and_judged_at_the_tables_speed(tmp_path):
    """The found network and the backbone are timed in the same turns; the budget is judged on their ratio turn by
    turn times the table's backbone. Here the machine runs 10% slower than when the table was measured, and one turn
    is twice as slow for both: measured raw, the found network is over M; at the table's speed it is within."""
    table = latency_table.measure_table(TARGET, measure=made_up_measure)
    predicted = latency_table.predict_ms(table, FOUND)
    exported = tmp_path / "model_int8.tflite"
    exported.write_bytes(b"the served model")
    slow = [1.1, 1.1, 2.2, 1.1, 1.1, 1.1, 1.1]
    calls = []
    measure = turns_measure({"found": [predicted * f for f in slow], "backbone": [BACKBONE_MS * f for f in slow]},
                            calls)
    budget_ns = round(1e6 * predicted * 1.05)
    record = latency_check.found_latency(table, TARGET, FOUND, budget_ns=budget_ns, exported=str(exported),
                                         measure=measure)
    assert calls == [{"found": ("file", str(exported)), "backbone": ("network", "resnet8")}]  # in the same turns
    assert record["predicted_ms"] == predicted and record["measured_ms"] == pytest.approx(predicted * 1.1)
    assert record["interval_ms"] == pytest.approx([predicted * 1.1, predicted * 2.2])  # 7 turns: min-max
    assert record["times_backbone"] == pytest.approx(predicted / BACKBONE_MS)
    assert record["at_table_speed_ms"] == pytest.approx(predicted)  # tolerance: float rounding
    assert record["at_table_speed_interval_ms"] == pytest.approx([predicted, predicted])  # the slow turn cancels
    assert record["within_budget"] and not record["within_budget_as_measured"]
    assert record["budget_ms"] == pytest.approx(predicted * 1.05)
    assert (record["backbone_table_ms"], record["backbone_measured_ms"]) == (BACKBONE_MS, pytest.approx(BACKBONE_MS * 1.1))
    assert (record["measured"], record["format"], record["threads"]) == ("exported file", "tflite_int8", 1)
    assert "within it at the table's speed, over it as measured now" in results.latency_line(record)

    over = latency_check.found_latency(table, TARGET, FOUND, budget_ns=round(1e6 * predicted * 0.99), measure=measure)
    assert calls[-1]["found"] == ("network", FOUND) and over["measured"] == "untrained network"
    assert not over["within_budget"]


def test_a_kept_measurement_is_reused_only_for_the_same_file_on_the_same_machine(tmp_path):
    table = latency_table.measure_table(TARGET, measure=made_up_measure)
    exported = tmp_path / "model_int8.tflite"
    exported.write_bytes(b"the served model")
    calls = []
    measure = turns_measure({"found": [0.7] * 7, "backbone": [0.5] * 7}, calls)
    first = latency_check.found_latency(table, TARGET, FOUND, budget_ns=800_000, exported=str(exported),
                                        measure=measure)
    kept = tmp_path / "latency.json"
    storage.write_json(str(kept), first)
    again = latency_check.found_latency(table, TARGET, FOUND, budget_ns=600_000, exported=str(exported),
                                        kept=latency_check.read_kept(str(kept)), measure=measure)
    assert len(calls) == 1 and again["measured_ms"] == 0.7 and not again["within_budget"]  # the budget is today's
    exported.write_bytes(b"another served model")
    latency_check.found_latency(table, TARGET, FOUND, budget_ns=800_000, exported=str(exported), kept=first,
                                measure=measure)
    elsewhere = {**first, "machine": {**first["machine"], "cpu": "another processor"}}
    exported.write_bytes(b"the served model")
    latency_check.found_latency(table, TARGET, FOUND, budget_ns=800_000, exported=str(exported), kept=elsewhere,
                                measure=measure)
    assert len(calls) == 3
    kept.write_text("{half written")
    assert latency_check.read_kept(str(kept)) is None and latency_check.read_kept(str(tmp_path / "none")) is None
