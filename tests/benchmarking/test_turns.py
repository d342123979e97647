"""Paired turns on a fake clock (kdas_tf.benchmarking.turns, .table): warm-up, calibration, alternating order,
and known timings giving the stated median, interval and verdict; derived references computed turn by turn.
Nothing here is timed: every runner advances the fake clock by the seconds its script says."""

import pytest

from kdas_tf.benchmarking import table, turns


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def runner(clock, seconds_per_step, name=None, calls=None, per_step=1.0, max_steps=None, traces=None):
    """A Runner whose k-th call takes seconds_per_step[k] per step (the last repeats), noting (name, steps)."""
    script = list(seconds_per_step)

    def run(steps):
        if calls is not None:
            calls.append((name, steps))
        clock.now += steps * (script.pop(0) if len(script) > 1 else script[0])

    return turns.Runner(run, per_step, max_steps, traces)


def test_warm_up_runs_single_steps_until_two_agree_then_the_chunk_grows_to_the_asked_seconds():
    clock = FakeClock()
    # tracing, first allocations, then steps within 10% of each other
    slow_start = runner(clock, [5.0, 0.5, 0.3, 0.31])
    calibration = turns.calibrate(slow_start, clock=clock, chunk_seconds=1.0)
    assert calibration["warmup_seconds"] == pytest.approx([5.0, 0.5, 0.3, 0.31])
    assert calibration["steps"] == 4 and calibration["seconds"] == pytest.approx(1.24)  # ceil(1.1 / 0.31)
    never_settles = runner(clock, [1.0, 2.0, 1.0, 2.0, 1.0, 2.0])
    assert len(turns.calibrate(never_settles, clock=clock, chunk_seconds=0.5, max_warmups=3)["warmup_seconds"]) == 3
    capped = runner(clock, [0.01], max_steps=16)  # a training chunk cannot outrun the data's epoch
    assert turns.calibrate(capped, clock=clock, chunk_seconds=1.0)["steps"] == 16


def test_each_turn_times_a_group_back_to_back_in_alternating_order():
    clock, calls = FakeClock(), []
    runners = {name: runner(clock, [0.5], name, calls) for name in ("a", "b", "c")}
    result = turns.paired_turns({"ab": ["a", "b"], "c": ["c"]}, runners, turns=3, chunk_seconds=1.0, clock=clock)
    timed = [name for name, steps in calls[-9:]]
    assert timed == ["a", "b", "c", "b", "a", "c", "a", "b", "c"]
    assert all(steps == 3 for _, steps in calls[-9:])  # calibrated to 1 s, aiming 10% past it: 3 steps of 0.5 s
    assert result["turns"]["ab"] == [{"a": 2.0, "b": 2.0}] * 3


def test_a_retrace_during_the_turns_shows_in_the_calibration_record():
    clock, calls = FakeClock(), []
    steady = runner(clock, [0.5], "steady", calls, traces=lambda: 1)
    # traced once while warming up, and again at its second timed turn (say, a batch of another shape)
    retraced = runner(clock, [0.5], "retraced", calls, traces=lambda: 1 + (len(calls) > 8))
    result = turns.paired_turns({"pair": ["steady", "retraced"]}, {"steady": steady, "retraced": retraced}, turns=3,
                                chunk_seconds=1.0, clock=clock)
    assert [(result["calibration"][n]["traces"], result["calibration"][n]["traces_after_turns"])
            for n in ("steady", "retraced")] == [(1, 1), (1, 2)]


def rows_from(measurement_seconds, reference_seconds, target=0.9):
    """The cached row of a bench whose measurement and reference take these seconds per turn (after warm-up)."""
    clock = FakeClock()
    warm = [1.0, 1.0]  # two warm-up steps that agree; one step lasts the chunk's 1 s, so no growth
    runners = {"cached_od": runner(clock, warm + measurement_seconds, per_step=128),
               "custom_step_ce": runner(clock, warm + reference_seconds, per_step=128)}
    timed = turns.paired_turns({"cached": ["cached_od", "custom_step_ce"]}, runners, turns=len(measurement_seconds),
                               chunk_seconds=1.0, clock=clock)
    [row] = table.compare(timed["turns"], [table.Row("cached_od", "custom_step_ce", "cached", ">=", target)])
    return row


def test_known_timings_give_the_stated_median_interval_and_verdict():
    # Rates are images per second, so each turn's ratio is the reference's seconds over the measurement's.
    met = rows_from([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 1.05, 0.95, 1.2, 1.0, 1.1, 0.98])
    assert met["ratios"] == pytest.approx([1.0, 1.05, 0.95, 1.2, 1.0, 1.1, 0.98])
    assert met["ratio"] == pytest.approx(1.0) and met["interval"] == pytest.approx([0.95, 1.2])
    assert met["value"] == pytest.approx(128.0) and met["verdict"] == "met"
    missed = rows_from([1.0] * 5, [0.8, 0.5, 0.75, 0.8, 0.625])
    assert missed["ratio"] == pytest.approx(0.75) and missed["interval"] == pytest.approx([0.5, 0.8])
    assert missed["verdict"] == "missed" and missed["coverage"] == pytest.approx(0.9375)
    undecided = rows_from([1.0] * 6, [1.0, 0.85, 1.3, 0.95, 1.1, 0.7])  # one slow turn either side of 0.9
    assert undecided["ratio"] == pytest.approx(0.975) and undecided["interval"] == pytest.approx([0.7, 1.3])
    assert undecided["verdict"] == "undecided"
    assert table.exit_status([met, undecided]) == 0 and table.exit_status([met, missed, undecided]) == 1


def test_the_online_bound_is_derived_in_each_turn_from_that_turns_step_and_forward():
    clock = FakeClock()
    warm = [1.0, 1.0]
    load = [1.0, 3.0, 1.0, 3.0, 2.0]  # the machine slows every runner alike in some turns
    runners = {"online_od": runner(clock, warm + [2.0 * f for f in load]),
               "custom_step_ce": runner(clock, warm + [1.0 * f for f in load]),
               "teacher_forward": runner(clock, warm + [0.25 * f for f in load])}
    timed = turns.paired_turns({"online": ["online_od", "custom_step_ce", "teacher_forward"]}, runners, turns=5,
                               chunk_seconds=0.1, clock=clock)
    derived = {"online_bound": table.online_bound(4)}
    [row] = table.compare(timed["turns"], [table.Row("online_od", "online_bound", "online", ">=", 0.9)], derived)
    # Each turn: bound = 1 / (1/ce + 4/forward) = 1 / (f + 4 * 0.25 f) = 1 / 2f, online_od = 1 / 2f: ratio 1.
    assert row["ratios"] == pytest.approx([1.0] * 5) and row["interval"] == pytest.approx([1.0, 1.0])
    assert table.per_turn(timed["turns"]["online"], "online_bound", derived) == pytest.approx([1 / (2 * f) for f in load])
    assert row["verdict"] == "met"
