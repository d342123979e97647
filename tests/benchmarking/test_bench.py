"""python -m kdas_tf.bench --quick runs end to end: every row has its turns, median, interval and verdict, the
search pairs each candidate with its CE training, and the exit status says whether a row missed (speeds are
not asserted: the quick settings' ratios mean nothing)."""

import json
import os
import subprocess
import sys

import pytest

from kdas_tf.benchmarking import table
from kdas_tf.reporting import stats

COMPARISONS = {
    ("custom_step_ce", "keras_fit_ce"), ("online_kd", "custom_step_ce"), ("online_od", "custom_step_ce"),
    ("online_kd", "online_bound"), ("online_od", "online_bound"), ("cached_od", "custom_step_ce"),
    ("cache_build", "ensemble_forward"), ("input_pipeline", "custom_step_ce"),
    ("custom_step_ce_mixed_bfloat16", "custom_step_ce"), ("teacher_forward_mixed_bfloat16", "teacher_forward"),
    ("search_seconds_per_candidate", "ce_seconds_per_candidate"),
    ("resident_mb_after_trial_5", "resident_mb_after_trial_1"),
}


@pytest.mark.slow
def test_a_quick_bench_gives_every_row_a_median_interval_and_verdict_and_exits_on_a_miss(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run(
        [sys.executable, "-m", "kdas_tf.bench", "--quick", "--num_teachers=3", "--mixed_policy=mixed_bfloat16",
         f"--json={out}", f"--workdir={tmp_path / 'scratch'}"],
        capture_output=True, text=True, env=env, timeout=400,
    )
    assert run.returncode in (0, 1), run.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert {(r["measurement"], r["reference"]) for r in rows} == COMPARISONS
    assert report["settings"]["network"] == "resnet8" and report["settings"]["num_teachers"] == 3  # given wins
    derived = {"online_bound": table.online_bound(3), "ensemble_forward": table.ensemble_forward(3)}
    for row in rows:
        turns = report["turns"][row["group"]]
        assert len(row["ratios"]) == row["turns"] == len(turns) == (1 if row["group"] == "memory" else 5), row
        values, references = (table.per_turn(turns, name, derived) for name in (row["measurement"], row["reference"]))
        assert row["ratios"] == pytest.approx([v / r for v, r in zip(values, references)])
        median, low, high, _ = stats.median_interval(row["ratios"])
        assert (row["ratio"], row["interval"]) == (pytest.approx(median), pytest.approx([low, high]))
        sense, target = row["target"].split() if row["target"] else (None, None)
        assert row["verdict"] == stats.verdict(low, high, sense, target and float(target))
    bound = [t["online_od"] * (1 / t["custom_step_ce"] + 3 / t["teacher_forward"]) for t in report["turns"]["online"]]
    assert next(r for r in rows if r["reference"] == "online_bound" and r["measurement"] == "online_od")["ratios"] \
        == pytest.approx(bound)  # the bound of each turn, from that turn's step and forward
    assert run.returncode == table.exit_status(rows)
    search = report["search"]
    assert [turn["reference_first"] for turn in search["turns"]] == [False, True, False, True, False]
    assert len(search["architectures"]) == len(search["resident_mb_after_each_trial"]) == 5
    lines = [line for line in run.stdout.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + len(rows) and "95% interval" in lines[0] and "verdict" in lines[0]


def test_fewer_than_five_turns_are_refused_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "kdas_tf.bench", "--turns=3"], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120)
    assert run.returncode == 2 and run.stderr.strip().splitlines()[-1].startswith("error: --turns must be at least 5")
