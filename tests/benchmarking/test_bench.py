"""python -m kdas_tf.bench runs on tiny settings and writes well-formed JSON (its speeds are not asserted)."""

import json
import math
import os
import subprocess
import sys

import pytest

TINY = [
    "--network=resnet8", "--image_size=8", "--channels=1", "--num_classes=10", "--batch_size=16",
    "--steps=2", "--warmup_steps=1", "--num_teachers=2", "--mixed_policy=mixed_bfloat16",
    "--search_trials=2", "--search_epochs=1", "--search_reference_trials=1", "--search_batch_size=128",
]
COMPARISONS = {
    ("custom_step_ce", "keras_fit_ce"), ("online_kd", "custom_step_ce"), ("online_od", "custom_step_ce"),
    ("online_kd", "online_bound"), ("online_od", "online_bound"), ("cached_od", "custom_step_ce"),
    ("cache_build", "ensemble_forward"), ("input_pipeline", "custom_step_ce"),
    ("custom_step_ce_mixed_bfloat16", "custom_step_ce"), ("teacher_forward_mixed_bfloat16", "teacher_forward"),
    ("search_seconds_per_candidate", "ce_seconds_per_candidate"),
    ("resident_mb_after_trial_2", "resident_mb_after_trial_1"),
}


@pytest.mark.slow
def test_a_tiny_bench_prints_one_table_and_writes_every_row_as_json(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run(
        [sys.executable, "-m", "kdas_tf.bench", *TINY, f"--json={out}", f"--workdir={tmp_path / 'scratch'}"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert {(r["measurement"], r["reference"]) for r in rows} == COMPARISONS
    for row in rows:
        assert math.isfinite(row["value"]) and row["value"] > 0, row
        assert row["ratio"] == pytest.approx(row["value"] / row["reference_value"])
        assert row["reference_value"] == report["measurements"][row["reference"]]
        assert (row["met"] is None) == (row["target"] is None)
    assert report["settings"]["network"] == "resnet8" and report["mixed_policy"] == "mixed_bfloat16"
    search = report["search"]
    assert len(search["architectures"]) == len(search["trial_seconds"]) == 2
    assert len(search["resident_mb_after_each_trial"]) == 2
    table = [line for line in run.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(rows)  # header and one line a row
