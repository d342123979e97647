"""The dry run's time estimate: the run's epochs, priced by training steps measured on this machine.

Networks are timed on random images of the data's shape, at the run's batch size and precision: the
teacher network, the backbone (the plain student's rows) and a median-sized candidate of each round
(drawn uniformly, as round 1 starts; later rounds sample from the learnt policy, which this does not
foresee), which stands for the round's trials; the last round's also
stands for the found model and the man-made networks. Add-on ops cost more per parameter than a ResNet's
convolutions on a CPU (depthwise convolutions most), so candidates are timed, not scaled. Each gives images/s for a training step and for a forward pass (validation, teacher outputs),
and its build-and-trace seconds, paid once per training. An epoch is the training split at the first
rate plus the validation split at the second; the teachers' forward is paid once for every (seed, epoch)
that a distilling training reads (teacher_outputs caches each one once, for all the run's losses). Tracing, steps and data only: the
estimate is as good as the machine's load while it measures and while the run runs.

Measuring is bounded: each network is timed for a fixed number of steps (TIMED_STEPS, after WARMUP_STEPS), the
backbone and the teacher network always, then the rounds' candidates, the last round first (it also stands for
the final rows), each started only while less than MEASURING_SECONDS have passed. A candidate left untimed is
priced at the backbone's speed: it is the backbone plus add-ons, so no faster, and the estimate is then stated
as a lower bound ("at least").
"""

import dataclasses
import time

import numpy as np
from absl import logging

from kdas_tf import data, models
from kdas_tf.runtime import progress, rows
from kdas_tf.benchmarking.suite import Bench, random_dataset


MEASURING_SECONDS = 60.0  # no candidate is started after this much measuring (a loaded machine is slow to trace)
TIMED_STEPS, WARMUP_STEPS = 4, 2  # per run of a network; measure() takes the faster of two runs


@dataclasses.dataclass(frozen=True)
class Speed:
    """A network measured at one batch size: images/s training and inferring, seconds to build and trace."""
    train: float
    infer: float
    start: float


def fastest_chunks(runners, steps, repeats):
    """Images/s of each runner (a turns.Runner), taking turns chunk by chunk; each keeps its fastest chunk.

    A forecast's measurement, a few seconds long: the bench's rows use paired turns (benchmarking.turns).
    """
    chunk = max(1, steps // repeats)
    best = {name: float("inf") for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner.run(chunk)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: chunk * runners[name].per_step / seconds for name, seconds in best.items()}


def measure(arch, *, num_classes, image_shape, batch_size, policy, steps=TIMED_STEPS, warmup_steps=WARMUP_STEPS):
    """The Speed of `arch` (a name or an Architecture): the faster of two runs of `steps` batches, after
    `warmup_steps` (each run starts an epoch's input stream, as training does once per epoch)."""
    dataset = random_dataset(batch_size * max(warmup_steps, steps), image_shape[0], image_shape[-1], num_classes)
    bench = Bench(dataset, network=arch, batch_size=batch_size, warmup_steps=warmup_steps, scratch=None)
    begin = time.perf_counter()
    train = bench.trainer_step(policy=policy)
    started = time.perf_counter() - begin
    infer = bench.forward(policy=policy)
    speeds = fastest_chunks({"train": train, "infer": infer}, steps=2 * steps, repeats=2)
    start = max(0.0, started - warmup_steps * batch_size / speeds["train"])
    return Speed(train=speeds["train"], infer=speeds["infer"], start=start)


def median_candidates(config, num_classes, image_shape, samples=25):
    """Each round's network of the median size among `samples` uniform draws (models.uniform_samples)."""
    search = config.search
    drawn = list(models.uniform_samples(search.backbone, search.rounds, search.ops_per_addon, samples,
                                        seed=config.recipe.seed))
    medians = []
    for round_index in range(search.rounds):
        archs = [sample[round_index] for sample in drawn]
        sizes = [models.count_parameters(arch, num_classes, image_shape,
                                         shortcut=config.model.shortcut) for arch in archs]
        medians.append(archs[int(np.argsort(sizes)[len(sizes) // 2])])
    return medians


def run_seconds(config, speeds, num_train, num_val):
    """{step: seconds} of the whole run; speeds: {"teacher", "backbone", "round 1", ..., "round R": Speed}."""
    search, recipe = config.search, config.recipe
    last_round = speeds[f"round {search.rounds}"]
    num_teachers = 0 if config.teachers.models else config.teachers.num_teachers

    def trainings(speed, count, epochs):
        return count * (speed.start + epochs * (num_train / speed.train + num_val / speed.infer))

    teacher_forward = num_train * max(num_teachers, 1) / speeds["teacher"].infer  # one (seed, epoch) of outputs
    planned = rows.final_rows(search, "found", search.manmade)
    distilled = {(recipe.seed, epoch) for epoch in range(search.search_epochs) if search.search_loss != "ce"}
    if any(loss != "ce" for _, _, loss in planned):
        distilled |= {(recipe.seed + index, epoch) for index in range(search.seeds) for epoch in range(recipe.epochs)}
    students = len(search.student_loss)
    return {
        "teachers": trainings(speeds["teacher"], num_teachers, config.teacher_epochs),
        "search": sum(trainings(speeds[f"round {r + 1}"], search.trials_per_round, search.search_epochs)
                      for r in range(search.rounds)),
        "final rows": trainings(speeds["backbone"], students * search.seeds, recipe.epochs)
        + trainings(last_round, (len(planned) - students) * search.seeds, recipe.epochs),
        "teacher outputs": len(distilled) * teacher_forward,
    }


def timed_speeds(config, shape, candidates, *, seconds=MEASURING_SECONDS, clock=time.monotonic):
    """{name: Speed} of the networks timed here: the backbone and the teacher network, then each round's candidate,
    the last round first, each started only within `seconds` of measuring; the rounds left untimed are absent."""
    search = config.search
    began = clock()
    speeds = {"backbone": measure(search.backbone, **shape)}
    speeds["teacher"] = (speeds["backbone"] if config.teachers.network == search.backbone
                         else measure(config.teachers.network, **shape))
    for index in reversed(range(len(candidates))):
        if clock() - began >= seconds:
            break
        speeds[f"round {index + 1}"] = measure(candidates[index], **shape)
    return speeds


def describe(config, num_classes, image_shape, *, seconds=MEASURING_SECONDS, clock=time.monotonic):
    """The dry run's lines: every step's epochs and its estimated time, from networks timed now (in about
    `seconds`, see the module's docstring)."""
    search = config.search
    shape = dict(num_classes=num_classes, image_shape=image_shape, batch_size=config.recipe.batch_size,
                 policy=config.recipe.precision)
    candidates = median_candidates(config, num_classes, image_shape)
    logging.info("dry run: timing %s and %d candidate(s) here for the estimate (no candidate started after %.0f s "
                 "of measuring; --noestimate skips it)", " and ".join(dict.fromkeys(
                     (search.backbone, config.teachers.network))), len(candidates), seconds)
    speeds = timed_speeds(config, shape, candidates, seconds=seconds, clock=clock)
    untimed = [f"round {r + 1}" for r in range(search.rounds) if f"round {r + 1}" not in speeds]
    speeds.update((name, speeds["backbone"]) for name in untimed)
    epochs = {
        "teachers": 0 if config.teachers.models else config.teachers.num_teachers * config.teacher_epochs,
        "search": search.num_trials() * search.search_epochs,
        "final rows": len(rows.final_rows(search, "found", search.manmade)) * search.seeds * config.recipe.epochs,
    }
    timed = [name for name in ("backbone", *(f"round {r + 1}" for r in range(search.rounds)), "teacher")
             if name not in untimed]
    lines = [f"  epochs of training: {sum(epochs.values())} ("
             + ", ".join(f"{step} {count}" for step, count in epochs.items()) + ")",
             "  measured here, images/s training / inferring: "
             + ", ".join(f"{name} {speeds[name].train:.0f} / {speeds[name].infer:.0f}" for name in timed)
             + "".join(f"\n    round {r + 1}'s median candidate: {arch}" for r, arch in enumerate(candidates))]
    if untimed:
        lines.append(f"  not timed within {seconds:.0f} s of measuring: the candidates of {', '.join(untimed)}, priced "
                     "at the backbone's speed (they are no faster): the time below is a lower bound")
    size = data.TRAIN_SIZES.get(config.data.dataset)
    if size is None:
        per_thousand = 1000 / speeds["backbone"].train
        return lines + [f"  time: {per_thousand:.1f} s per 1,000 training images per epoch of {search.backbone}; "
                        "the number of images of a dataset by reference is known once it is read"]
    num_train, num_val = data.split_sizes(size, config.data.val_fraction, config.data.train_examples)
    seconds_by_step = run_seconds(config, speeds, num_train, num_val)
    return lines + [f"  estimated time on this machine at its present load: {'at least ' if untimed else ''}about "
                    f"{progress.duration(sum(seconds_by_step.values()))} ("
                    + ", ".join(f"{step} {progress.duration(s)}" for step, s in seconds_by_step.items())
                    + f"; {num_train} training and {num_val} validation images)"]
