"""Why the bench's cached OD step could measure faster than the CE step it is compared with (docs/performance.md).

    python -m tools.bench_order [--turns=12] [--json=order.json]

On the bench's default step settings (ResNet-32, 32x32x3, 100 classes, batch 128, N = 5 members): each
step's tracing count before and after everything; the paired turns of the present bench for cached OD
and CE, with the ratios of the turns where cached OD went first apart from those where CE did; the old
method (chunks of 8 steps in the fixed order fit, CE, online OD, cached OD, each keeping its fastest of
3) replicated 3 times; and a CE chunk right after a Keras fit chunk against one right after a cached OD
chunk (was the old order unfair to CE?). Meaningful on an idle machine only: it prints the load average.
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np

from kdas_tf import cli  # noqa: F401  (quiets TensorFlow's start-up)
from kdas_tf.benchmarking import suite, turns
from kdas_tf.distill import teacher_outputs
from kdas_tf.reporting import stats

OLD_ORDER = ("keras_fit_ce", "custom_step_ce", "online_od", "cached_od")


def make_runners(scratch):
    dataset = suite.random_dataset(8 * 128, 32, 3, 100)
    bench = suite.Bench(dataset, network="resnet32", batch_size=128, scratch=scratch)
    teacher, paths = bench.make_teachers(5)
    cache = teacher_outputs.CachedTeacherOutputs(teacher, "od", dataset, member_paths=paths,
                                                 cache_dir=os.path.join(scratch, "cache"))
    for epoch in (0, 1):
        cache.epoch_targets(epoch, 0)
    return {"keras_fit_ce": bench.keras_fit(), "custom_step_ce": bench.trainer_step("ce"),
            "online_od": bench.trainer_step("od", teacher_outputs.OnlineTeacherOutputs(teacher, "od")),
            "cached_od": bench.trainer_step("od", cache)}


def old_method(runners, clock=time.perf_counter):
    """cached_od / custom_step_ce and custom_step_ce / keras_fit_ce as the bench computed them before issue 31."""
    best = {name: np.inf for name in OLD_ORDER}
    for _ in range(3):
        for name in OLD_ORDER:
            best[name] = min(best[name], turns.timed(runners[name].run, 8, clock))
    return {"cached_over_ce": best["custom_step_ce"] / best["cached_od"],
            "ce_over_fit": best["keras_fit_ce"] / best["custom_step_ce"]}


def predecessor(runners, pairs=8, clock=time.perf_counter):
    """Seconds of 3 CE steps right after 3 steps of Keras fit, and right after 3 of cached OD, alternately."""
    after = {"keras_fit_ce": [], "cached_od": []}
    for _ in range(pairs):
        for before in after:
            runners[before].run(3)
            after[before].append(turns.timed(runners["custom_step_ce"].run, 3, clock))
    return after


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    report = {"load_average_at_start": os.getloadavg()}
    runners = make_runners(tempfile.mkdtemp(prefix="bench_order-"))
    paired = turns.paired_turns({"cached": ["cached_od", "custom_step_ce"]}, runners, turns=args.turns,
                                chunk_seconds=1.0)
    ratios = [turn["cached_od"] / turn["custom_step_ce"] for turn in paired["turns"]["cached"]]
    report["paired"] = {"ratios": ratios, "median_interval": stats.median_interval(ratios),
                        "cached_first": float(np.median(ratios[0::2])), "ce_first": float(np.median(ratios[1::2]))}
    report["old_method"] = [old_method(runners) for _ in range(3)]
    report["ce_after"] = predecessor(runners)
    report["traces"] = {name: runner.traces() for name, runner in runners.items() if runner.traces}
    report["calibration"] = paired["calibration"]
    report["load_average_at_end"] = os.getloadavg()
    after = report["ce_after"]
    print(f"paired cached/ce: median {report['paired']['median_interval'][0]:.3f}, interval "
          f"{report['paired']['median_interval'][1]:.3f}-{report['paired']['median_interval'][2]:.3f}; cached first "
          f"{report['paired']['cached_first']:.3f}, CE first {report['paired']['ce_first']:.3f}")
    print("old method cached/ce:", [round(r["cached_over_ce"], 3) for r in report["old_method"]],
          "ce/fit:", [round(r["ce_over_fit"], 3) for r in report["old_method"]])
    print(f"CE chunk after fit / after cached OD: {np.median(np.divide(after['keras_fit_ce'], after['cached_od'])):.3f} "
          f"(median of {len(after['cached_od'])} pairs)")
    print("traces:", report["traces"], "load average:", report["load_average_at_start"], report["load_average_at_end"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=float)


if __name__ == "__main__":
    main()
