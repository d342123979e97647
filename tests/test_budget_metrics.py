"""--budget_metric=parameters|macs|latency: what --budget may say in each, how a job resolves it, that a work
directory made before the flag stays a parameters search, and that a latency table given to a run prices its
search and its dry run (a made-up table: nothing here is timed)."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from kdas_tf import assembly, config, dry_run, models
from kdas_tf.deploy import latency_table
from kdas_tf.errors import UserError
from kdas_tf.models.mac_count import count_macs
from kdas_tf.runtime import storage
from kdas_tf.runtime.workdir import Workdir

DIGITS = (10, (8, 8, 1))


def search(**fields):
    return config.SearchConfig(backbone="resnet8", **fields)


def run_config(workdir, **fields):
    return config.Config(run=config.RunConfig(workdir=str(workdir)), data=config.DataConfig("digits"),
                         search=search(**fields))


@pytest.mark.parametrize("metric, budget, form", [
    ("parameters", "0.9", ("millions", 0.9)), ("parameters", "0.9M", ("millions", 0.9)),
    ("parameters", "2x", ("multiple", 2.0)), ("macs", "40M", ("absolute", 40e6)), ("macs", "40", ("absolute", 40e6)),
    ("macs", "1.2G", ("absolute", 1.2e9)), ("macs", "500k", ("absolute", 5e5)), ("macs", "1.5x", ("multiple", 1.5)),
    ("latency", "1.5ms", ("absolute", 1.5e6)), ("latency", "300us", ("absolute", 3e5)),
    ("latency", "2", ("absolute", 2e6)), ("latency", "2x", ("multiple", 2.0)),
])
def test_each_metric_reads_the_budget_in_its_own_units(metric, budget, form):
    assert search(budget_metric=metric, budget=budget).budget_form() == pytest.approx(form)


@pytest.mark.parametrize("metric, budget, message", [
    ("parameters", "1.5ms", "give millions of parameters (0.9) or a multiple (2x)"),
    ("macs", "1.5ms", "give MACs with a unit (40M, 1.2G, 500k"),
    ("latency", "40M", "give a latency with a unit (1.5ms, 300us"),
    ("latency", "0ms", "give a latency with a unit"),
])
def test_a_budget_in_another_metrics_units_is_refused_naming_this_ones(metric, budget, message):
    with pytest.raises(UserError, match=f"--budget='{budget.lower()}' is not a budget") as error:
        search(budget_metric=metric, budget=budget)
    assert message in str(error.value)


def test_the_latency_flags_are_checked_where_they_enter():
    with pytest.raises(UserError, match="--latency_table is a latency budget's table: it needs --budget_metric"):
        search(latency_table="phone.json")
    with pytest.raises(UserError, match="--latency_threads=0"):
        search(budget_metric="latency", latency_threads=0)
    with pytest.raises(UserError, match="value should be one of <parameters|macs|latency>"):
        config.from_args(["--workdir=/tmp/w", "--budget_metric=flops"])


def test_a_work_directory_made_before_the_metric_is_a_parameters_search(tmp_path):
    default = run_config(tmp_path)
    made_before = {k: v for k, v in default.settings().items()
                   if k not in ("budget_metric", "latency_format", "latency_threads")}
    storage.write_json(str(tmp_path / "settings.json"), made_before)
    Workdir(str(tmp_path)).claim(default.settings(), default.unrecorded_settings())  # resumes as it was made
    storage.write_json(str(tmp_path / "settings.json"), made_before)
    macs = run_config(tmp_path, budget_metric="macs")
    with pytest.raises(UserError, match="--budget_metric was 'parameters', now 'macs'"):
        Workdir(str(tmp_path)).claim(macs.settings(), macs.unrecorded_settings())


def test_a_macs_budget_resolves_in_macs_and_the_oracle_masks_in_them(tmp_path):
    macs = run_config(tmp_path, budget_metric="macs", budget="1.2x")
    backbone = count_macs("resnet8", *DIGITS)
    budget, base = assembly.budget(macs)
    assert (budget, base) == (int(1.2 * backbone), backbone)
    oracle = assembly.make_oracle(macs, *DIGITS, budget)
    for _ in range(20):
        values = oracle.search_rounds.propose(set())
        assert count_macs(values["architecture"], *DIGITS) == values["macs"] <= budget
        assert values["parameters"] == models.count_parameters(values["architecture"], *DIGITS)
    with pytest.raises(UserError, match="MACs but the backbone resnet8 alone has"):
        assembly.budget(run_config(tmp_path, budget_metric="macs", budget="0.1M"))


def test_the_dry_run_states_a_soft_objective_and_a_run_without_one_says_nothing_of_it(tmp_path):
    soft = dry_run.describe_plan(run_config(tmp_path, cost_exponent=-0.07))
    assert ("  reward: val top-1 x (cost / 0.150M)^-0.07 (--cost_exponent, MnasNet's soft objective; the budget's "
            "mask still binds): a network at half the budget scores 1.050 x its top-1") in soft
    assert "--cost_exponent" not in dry_run.describe_plan(run_config(tmp_path))


def made_up_table(path, **changes):
    """A table of the digits backbone in the latency_table format (numbers made up), written to `path`."""
    def measure(described):
        return {key: 0.2 if d[0] == "network" else 0.01 + 0.004 * len(d[2]) for key, d in described.items()}

    target = latency_table.Target("resnet8", *DIGITS, "zero_pad", "tflite_int8", 1)
    table = {**latency_table.measure_table(target, measure=measure), **changes}
    storage.write_json(str(path), table)
    return table


def test_a_given_latency_table_prices_the_search_and_its_dry_run(tmp_path):
    table = made_up_table(tmp_path / "phone.json", machine={"cpu": "Cortex-A76", "cores": 8})
    latency = run_config(tmp_path / "run", budget_metric="latency", budget="0.3ms",
                         latency_table=str(tmp_path / "phone.json"))
    budget, base = assembly.budget(latency)
    assert (budget, base) == (300_000, 200_000)  # nanoseconds
    kept = Workdir(str(tmp_path / "run")).latency_table
    assert storage.read_json(kept)["machine"]["cpu"] == "Cortex-A76"
    oracle = assembly.make_oracle(latency, *DIGITS, budget)
    for _ in range(20):
        values = oracle.search_rounds.propose(set())
        predicted = latency_table.predict_ms(table, values["architecture"])
        assert values["latency_ns"] == pytest.approx(1e6 * predicted, abs=10) and values["latency_ns"] <= budget
    plan = dry_run.describe_plan(latency)
    assert "of resnet8 (0.200 ms, zero_pad shortcuts)" in plan and "budget 0.300 ms" in plan
    assert "latency table: tflite_int8, 1 thread(s), measured on Cortex-A76 (8 cores" in plan
    assert "reachable latency (skip everywhere" in plan and "    after round 1: 0.200 ms / " in plan


def test_a_finished_latency_search_reads_back_without_measuring(tmp_path):
    made_up_table(tmp_path / "phone.json")
    latency = run_config(tmp_path, budget_metric="latency", latency_table=str(tmp_path / "phone.json"))
    cost = assembly.cost_model(latency)
    os.remove(str(tmp_path / "phone.json"))  # the run keeps its own copy
    unflagged = run_config(tmp_path, budget_metric="latency")
    assert assembly.cost_model(unflagged, missing="refuse").of("resnet8") == cost.of("resnet8")


def test_every_flagfile_still_searches_in_parameters():
    for name in sorted(os.listdir(os.path.join(ROOT, "flags"))):
        if name.endswith(".cfg"):
            parsed = config.from_args([f"--flagfile={os.path.join(ROOT, 'flags', name)}", "--workdir=/tmp/w"])
            assert parsed.search.budget_metric == "parameters", name


def test_the_latency_command_prints_a_given_table_and_refuses_a_bad_check_in_one_line(tmp_path):
    made_up_table(tmp_path / "phone.json")
    command = [sys.executable, "-m", "kdas_tf.latency", "--flagfile=flags/digits.cfg", f"--workdir={tmp_path}/run",
               f"--latency_table={tmp_path}/phone.json"]
    shown = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "| conv3x3 | " in shown.stdout and "resnet8 alone: 0.2000 ms (0.2000 to 0.2000; tflite_int8, 1 thread(s)" in shown.stdout
    refused = subprocess.run([*command, "--check=-1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith("error: --check=-1")
