"""Timing in paired turns: each runner warmed up and its chunk calibrated, then groups timed back to back.

A runner is a function run(steps) that does `steps` units of work (training steps, batches, cache epochs)
and returns when they are done. Before it is timed it runs one step at a time until two successive steps
take times within `settle` of each other (tracing, first allocations and data caches happen there), then
its chunk grows, as pyperf and Google Benchmark grow their loops, until one chunk lasts `chunk_seconds`.
A group is runners whose rates are compared: in every turn they run one after the other, in the group's
order on even turns and reversed on odd ones, so a measurement and its reference share the machine's load
of that moment and neither always goes first. The clock is a parameter: tests drive it by hand.
"""

import dataclasses
import math
import time
import typing

GROWTH = 10  # at most this factor between two calibration chunks (Google Benchmark's limit)


@dataclasses.dataclass(frozen=True)
class Runner:
    """Work to time: run(steps) does `steps` steps of `per_step` images each, at most `max_steps` per call.

    traces: how many times its compiled step has been traced so far, if it has one; a trace between the
    end of calibration and the last turn would be timed, and the JSON shows whether one happened.
    """

    run: typing.Callable[[int], object]
    per_step: float = 1.0
    max_steps: typing.Optional[int] = None
    traces: typing.Optional[typing.Callable[[], int]] = None


def timed(run, steps, clock):
    start = clock()
    run(steps)
    return clock() - start


def warm_up(runner, *, clock, settle=0.1, max_warmups=10):
    """Seconds of the one-step calls that warmed `runner` up: until two in a row agree within `settle`."""
    seconds = []
    while len(seconds) < max_warmups:
        seconds.append(timed(runner.run, 1, clock))
        if len(seconds) >= 2 and abs(seconds[-1] - seconds[-2]) <= settle * seconds[-2]:
            break
    return seconds


def calibrate(runner, *, clock, chunk_seconds, settle=0.1, max_warmups=10):
    """Steps per chunk for `runner`, warmed up first: the fewest steps that last `chunk_seconds` (or max_steps).

    Returns {"steps", "seconds" (the last calibration chunk's, untimed), "warmup_seconds"}.
    """
    warmups = warm_up(runner, clock=clock, settle=settle, max_warmups=max_warmups)
    steps, seconds = 1, warmups[-1]
    limit = runner.max_steps or math.inf
    while seconds < chunk_seconds and steps < limit:
        wanted = math.ceil(steps * 1.1 * chunk_seconds / seconds) if seconds > 0 else steps * GROWTH
        steps = int(min(limit, max(steps + 1, min(wanted, steps * GROWTH))))
        seconds = timed(runner.run, steps, clock)
    return {"steps": steps, "seconds": seconds, "warmup_seconds": warmups}


def order(group, turn):
    """The runners of `group` in the order turn `turn` times them: as given on even turns, reversed on odd."""
    return list(group) if turn % 2 == 0 else list(reversed(group))


def paired_turns(groups, runners, *, turns, chunk_seconds, clock=time.perf_counter, settle=0.1, max_warmups=10):
    """Rates (per_step units per second) of every group's runners in every turn, each group timed back to back.

    groups: {group name: [runner names]}; runners: {name: Runner}, each calibrated once, before any turn.
    Returns {"calibration": {runner: calibrate()'s result, with "traces" after it and "traces_after_turns"},
    "turns": {group: [{runner: rate}, ...]}}.
    """
    used = list(dict.fromkeys(name for group in groups.values() for name in group))
    calibration = {}
    for name in used:
        calibration[name] = calibrate(runners[name], clock=clock, chunk_seconds=chunk_seconds, settle=settle,
                                      max_warmups=max_warmups)
        calibration[name]["traces"] = runners[name].traces() if runners[name].traces else None
    rates = {group: [] for group in groups}
    for turn in range(turns):
        for group, names in groups.items():
            rate = {}
            for name in order(names, turn):
                steps = calibration[name]["steps"]
                rate[name] = steps * runners[name].per_step / timed(runners[name].run, steps, clock)
            rates[group].append(rate)
    for name in used:
        calibration[name]["traces_after_turns"] = runners[name].traces() if runners[name].traces else None
    return {"calibration": calibration, "turns": rates}
