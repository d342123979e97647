"""Progress a person can follow: the run's ETA from its plan in epochs, the search's ETA, the epoch bar, and the
dry run's time estimate."""

import io
import re

import pytest
from absl import logging

from kdas_tf import data, dry_run
from kdas_tf.benchmarking import estimate
from kdas_tf.distill.trainer import Trainer
from kdas_tf.runtime import progress
from conftest import tiny_config


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_run_eta_is_the_wall_time_per_finished_epoch_times_the_epochs_left():
    clock = Clock()
    run = progress.RunProgress({"teachers": 10, "search": 6, "final rows": 4, "export": 0}, clock=clock)
    run.start("teachers")
    assert run.eta() is None and run.eta_text() == "run ETA after the first epoch"
    clock.now += 30.0  # 3 epochs in 30 s: 10 s per epoch
    run.epoch_done(3)
    assert run.epochs_left == {"teachers": 7, "search": 6, "final rows": 4, "export": 0}
    assert run.eta() == pytest.approx(10.0 * 17)
    run.skipped(2)  # a member resumed from its checkpoint at epoch 2
    assert run.eta() == pytest.approx(10.0 * 15)


def test_a_resumed_run_times_its_epochs_from_the_first_step_that_trains():
    clock = Clock()
    run = progress.RunProgress({"teachers": 0, "search": 0, "final rows": 10}, clock=clock)
    run.start("teachers")
    clock.now += 45.0  # the finished teachers read back and evaluated: no epoch
    run.start("search")
    clock.now += 15.0  # the finished search read back
    run.start("final rows")
    clock.now += 20.0
    run.epoch_done()
    assert run.eta() == pytest.approx(20.0 * 9)
    clock.now += 100.0  # once an epoch is measured, everything after it counts: a step's start-up too
    run.start("final rows")
    run.epoch_done()
    assert run.eta() == pytest.approx(60.0 * 8)


def test_a_step_that_starts_ends_the_steps_before_it_and_may_recount_its_own():
    run = progress.RunProgress({"teachers": 10, "search": 6, "final rows": 4}, clock=Clock())
    run.start("final rows", epochs_left=9)  # a search that converged early left 6 epochs untrained
    assert run.epochs_left == {"teachers": 0, "search": 0, "final rows": 9}


def test_the_step_line_names_the_step_its_epochs_and_the_run_eta(monkeypatch):
    lines = []
    monkeypatch.setattr(logging, "info", lambda message, *args: lines.append(message % args))
    clock = Clock()
    run = progress.RunProgress({"teachers": 4, "search": 2}, clock=clock)
    run.start("teachers")
    clock.now += 20.0
    run.epoch_done(4)
    run.start("search")
    assert lines == ["step 1/2: teachers, 4 epochs to train; run ETA after the first epoch",
                     "step 2/2: search, 2 epochs to train; run ETA 0m10s"]


def test_the_search_eta_is_the_mean_trial_time_over_the_trials_left_run_k_at_a_time():
    assert progress.search_eta([], 5) is None
    assert progress.search_eta([10.0, 30.0], 5) == pytest.approx(100.0)
    assert progress.search_eta([10.0, 30.0], 5, parallel_trials=2) == pytest.approx(60.0)  # 3 waves of 2


def test_an_epoch_bar_is_drawn_on_a_terminal_and_nothing_is_written_elsewhere():
    terminal, log_file = Terminal(), io.StringIO()
    for stream in (terminal, log_file):
        with progress.epoch_bar(3, "teacher 0 epoch 1/2", stream=stream) as bar:
            for _ in range(3):
                bar.update()
        assert bar.n == (3 if stream is terminal else 0)  # tqdm's disabled bar is a no-op
    drawn = terminal.getvalue()
    assert "teacher 0 epoch 1/2:" in drawn and "/3 [" in drawn and "batch/s" in drawn
    assert drawn.endswith("\r")  # erased at the end of the epoch, for the epoch's line
    assert log_file.getvalue() == ""


def test_durations_read_as_minutes_and_seconds_or_hours_and_minutes():
    assert progress.duration(187) == "3m07s"
    assert progress.duration(3725) == "1h02m"


def _speed(train, infer=1000.0, start=2.0):
    return estimate.Speed(train=train, infer=infer, start=start)


def test_the_estimate_prices_every_training_by_its_network_and_the_teacher_outputs(tmp_path):
    config = tiny_config(str(tmp_path), "--rounds=2", "--student_loss=ce,kd", "--final_loss=od", "--seeds=2",
                         "--search_loss=od", "--manmade=resnet14")
    search, teachers = config.search, config.teachers
    speeds = {"teacher": _speed(500.0), "backbone": _speed(400.0), "round 1": _speed(200.0),
              "round 2": _speed(100.0)}
    num_train, num_val = 1000, 100

    def trainings(train, count, epochs):  # per training: start, then epochs of train + val images
        return count * (2.0 + epochs * (num_train / train + num_val / 1000.0))

    forward = num_train * teachers.num_teachers / 1000.0  # the ensemble over one (seed, epoch)
    seconds = estimate.run_seconds(config, speeds, num_train, num_val)
    assert seconds["teachers"] == pytest.approx(trainings(500.0, teachers.num_teachers, config.teacher_epochs))
    assert seconds["search"] == pytest.approx(
        trainings(200.0, search.trials_per_round, search.search_epochs)
        + trainings(100.0, search.trials_per_round, search.search_epochs))
    assert seconds["final rows"] == pytest.approx(
        trainings(400.0, 2 * 2, config.recipe.epochs)  # student ce, kd x 2 seeds
        + trainings(100.0, 2 * 2, config.recipe.epochs))  # kdas od, manmade od x 2 seeds
    # One forward per (seed, epoch) that KD or OD reads, both losses from the same one: the two final seeds'
    # epochs; the search's trainings are seed 0's first epochs.
    read = 2 * config.recipe.epochs + max(0, search.search_epochs - config.recipe.epochs)
    assert seconds["teacher outputs"] == pytest.approx(read * forward)
    plain = tiny_config(str(tmp_path), "--student_loss=ce", "--final_loss=ce", "--search_loss=ce")
    assert estimate.run_seconds(plain, speeds, num_train, num_val)["teacher outputs"] == 0


def test_the_dry_run_estimate_times_the_networks_here_and_prices_the_plan(tmp_path):
    config = tiny_config(str(tmp_path), "--rounds=2")
    lines = dry_run.estimate_lines(config)
    search = config.search
    epochs = (config.teachers.num_teachers * config.teacher_epochs
              + search.rounds * search.trials_per_round * search.search_epochs
              + (len(search.student_loss) + len(search.final_loss)) * search.seeds * config.recipe.epochs)
    assert lines[0].startswith(f"  epochs of training: {epochs} (")
    speeds = re.findall(r"(backbone|round 1|round 2|teacher) (\d+) / (\d+)", lines[1])
    untimed = re.findall(r"round \d", "".join(line for line in lines if "not timed within" in line))  # a slow machine
    assert [name for name, _, _ in speeds] == [n for n in ("backbone", "round 1", "round 2", "teacher") if n not in untimed]
    assert all(int(train) > 0 and int(infer) > 0 for _, train, infer in speeds)
    num_train, num_val = data.split_sizes(data.TRAIN_SIZES["digits"], config.data.val_fraction)
    assert re.search(rf"about (\d+m\d\ds|\d+h\d\dm) \(teachers .*; {num_train} training and {num_val} validation",
                     lines[-1])


def test_the_estimate_starts_no_candidate_after_its_measuring_time_and_then_says_it_is_a_lower_bound(tmp_path,
                                                                                                       monkeypatch):
    config = tiny_config(str(tmp_path), "--rounds=3")  # teacher network and backbone: resnet8
    clock, timed = Clock(), []

    def measure(arch, **shape):  # each network takes 40 s to time on this machine
        timed.append(str(arch))
        clock.now += 40.0
        return _speed(100.0)

    monkeypatch.setattr(estimate, "measure", measure)
    candidates = [str(arch) for arch in estimate.median_candidates(config, 10, (8, 8, 1))]
    lines = estimate.describe(config, 10, (8, 8, 1), seconds=60.0, clock=clock)
    assert timed == ["resnet8", candidates[2]]  # round 3's was started at 40 s, round 2's would be at 80 s
    assert "not timed within 60 s of measuring: the candidates of round 1, round 2" in lines[2]
    assert "at least about" in lines[-1]
    timed.clear()
    lines = estimate.describe(config, 10, (8, 8, 1), seconds=float("inf"), clock=clock)
    assert timed == ["resnet8", *reversed(candidates)] and "at least" not in "\n".join(lines)


def test_timing_a_network_trains_a_fixed_number_of_steps(monkeypatch):
    calls, train_epoch = [], Trainer.train_epoch

    def counted(self, epoch, *, steps=None, bar=None):
        calls.append(steps)
        return train_epoch(self, epoch, steps=steps, bar=bar)

    monkeypatch.setattr(Trainer, "train_epoch", counted)
    estimate.measure("resnet8", num_classes=10, image_shape=(8, 8, 1), batch_size=16, policy="float32")
    assert calls == [estimate.WARMUP_STEPS, estimate.TIMED_STEPS, estimate.TIMED_STEPS]  # whatever the machine's speed
