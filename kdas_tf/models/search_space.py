"""The sizes a search can reach, round by round, so that --rounds, --ops_per_addon and --budget can be seen to agree.

Each round adds one module of `ops_per_addon` operations after every stage, so after r rounds a network has
between the backbone's parameters (skip everywhere) and the backbone plus r modules of the largest operation
everywhere. The budget M binds only if that largest network exceeds it; a search whose reach ends below M
never meets the budget at all (PAPER.md section 4: ResNet-32 with L = 2 reaches 0.739M in one round, while
the paper's KDAS models have 0.87-0.97M).
"""

import dataclasses

import numpy as np

from kdas_tf.models.addons import addon_op_params
from kdas_tf.models.architecture import ADDON_OPS, Architecture, as_architecture
from kdas_tf.models.costs import AdditiveCost, format_cost
from kdas_tf.models.networks import stage_channels
from kdas_tf.models.param_count import count_parameters


@dataclasses.dataclass(frozen=True)
class Reach:
    """Parameters of the networks `rounds` rounds can reach: all skip, the median of uniform samples, the largest."""
    rounds: int
    smallest: int
    median: int
    largest: int


def reachable_sizes(backbone: Architecture | str, *, rounds: int, ops_per_addon: int, num_classes: int,
                    input_shape=(32, 32, 3), shortcut: str = "zero_pad", samples: int = 200,
                    seed: int = 0, cost: AdditiveCost | None = None) -> list[Reach]:
    """One Reach per round 1..rounds, in parameters or in `cost`'s metric (its most costly op everywhere is the
    largest). smallest and largest are exact; median is over `samples` sequences of rounds drawn uniformly from
    ADDON_OPS (the controller's prior, before it learns; the budget ignored)."""
    backbone = as_architecture(backbone)
    if cost is None:
        widths = stage_channels(backbone.backbone)
        largest_ops = [[max(ADDON_OPS, key=lambda op: addon_op_params(op, width))] * ops_per_addon
                       for width in widths]
    else:
        largest_ops = [[ADDON_OPS[int(np.argmax(row))]] * ops_per_addon for row in cost.per_stage]

    def count(arch):
        return cost.of(arch) if cost else count_parameters(arch, num_classes, input_shape, shortcut=shortcut)

    sampled = np.array([[count(arch) for arch in sample]
                        for sample in uniform_samples(backbone, rounds, ops_per_addon, samples, seed)], np.int64)
    reach, largest = [], backbone
    for r in range(rounds):
        largest = largest.with_addons(largest_ops)
        reach.append(Reach(r + 1, count(backbone), int(round(np.median(sampled[:, r]))), count(largest)))
    return reach


def uniform_samples(backbone: Architecture | str, rounds: int, ops_per_addon: int, samples: int, seed: int = 0):
    """`samples` lists of the networks after rounds 1..rounds, every add-on op drawn uniformly from ADDON_OPS."""
    backbone = as_architecture(backbone)
    stages = len(stage_channels(backbone.backbone))
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        arch, sample = backbone, []
        for tokens in rng.integers(len(ADDON_OPS), size=(rounds, stages, ops_per_addon)):
            arch = arch.with_addons([[ADDON_OPS[t] for t in stage] for stage in tokens])
            sample.append(arch)
        yield sample


def budget_warning(reach: Reach, budget: int, metric: str = "parameters") -> str | None:
    """Why the budget M cannot do its job after the last round, or None when the search can reach past it."""
    def price(value):
        return format_cost(metric, value)

    if reach.smallest > budget:
        return (f"the budget cannot be met: the smallest network, {price(reach.smallest)}, exceeds "
                f"M = {price(budget)}; raise --budget")
    if reach.largest <= budget:
        return (f"the budget cannot bind: the largest network {reach.rounds} round(s) can reach has "
                f"{price(reach.largest)} <= M = {price(budget)}; raise --rounds or --ops_per_addon, "
                "or lower --budget")
    return None


def describe_reach(reach: list[Reach], budget: int, metric: str = "parameters") -> list[str]:
    """The dry run's lines: each round's reachable sizes (in `metric`), and a WARNING when the budget cannot do its
    job."""
    what = "sizes" if metric == "parameters" else metric

    def price(value):
        return format_cost(metric, value)

    lines = [f"  reachable {what} (skip everywhere / median of uniform samples / the largest op everywhere):"]
    lines += [f"    after round {r.rounds}: {price(r.smallest)} / {price(r.median)} / {price(r.largest)}"
              for r in reach]
    warning = budget_warning(reach[-1], budget, metric)
    return lines + ([f"  WARNING: {warning}"] if warning else [])
