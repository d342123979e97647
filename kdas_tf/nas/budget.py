"""The budget M of a search: refused where the backbone alone exceeds it, and what each choice costs.

The add-on operations' costs add up (count_parameters = backbone + each op at its stage's width + head; MACs
likewise at each stage's shape; a latency table by construction), so a choice's cost does not depend on the others:
a [decisions, operations] table and the budget left after the round's backbone are all the controller needs to
keep every sample within M (controller.feasible_choices). --budget_metric says what M counts
(kdas_tf.models.costs); parameters and MACs are counted here, latency is measured (kdas_tf.deploy.latency_table).
"""

import functools

import numpy as np

from kdas_tf import models
from kdas_tf.models.costs import AdditiveCost, format_cost
from kdas_tf.models.mac_count import count_macs

COUNTS = {"parameters": models.count_parameters, "macs": count_macs}


def analytic_cost(metric, backbone, num_classes, input_shape, shortcut="zero_pad"):
    """The AdditiveCost of `backbone`'s networks in parameters or MACs, each op's entry measured with the count
    itself (one op in one stage, against an all-skip module), so the table agrees with the count."""
    backbone = models.as_architecture(backbone)
    count = functools.partial(COUNTS[metric], num_classes=num_classes, input_shape=tuple(input_shape),
                              shortcut=shortcut)
    stages = backbone.num_stages

    def with_op(stage, op):
        return count(backbone.with_addons([(op if s == stage else "skip",) for s in range(stages)]))

    per_stage = [[with_op(s, op) - with_op(s, "skip") for op in models.ADDON_OPS] for s in range(stages)]
    plain = models.Architecture.backbone_only(backbone.backbone)
    return AdditiveCost(metric, backbone.backbone, count(plain), np.array(per_stage, np.int64), exact=count)


def resolve_budget(form, backbone, num_classes, input_shape, shortcut="zero_pad", *, cost=None):
    """(M, the backbone's cost) for a budget as written (SearchConfig.budget_form): ('multiple', 2.0) is twice the
    backbone's cost, ('millions', 0.9) is 900,000 parameters, ('absolute', n) is n in the cost's unit (MACs,
    nanoseconds); refused where the backbone alone exceeds it. cost: an AdditiveCost (default: parameters)."""
    backbone = models.as_architecture(backbone)
    cost = cost or analytic_cost("parameters", backbone, num_classes, input_shape, shortcut)
    backbone_cost = cost.of(backbone)
    unit, value = form
    scale = {"multiple": backbone_cost, "millions": 1e6, "absolute": 1}[unit]
    budget = int(value * scale)
    return check_budget(backbone, budget, num_classes, input_shape, shortcut, cost=cost), backbone_cost


def check_budget(backbone, budget, num_classes, input_shape, shortcut="zero_pad", *, cost=None):
    """The budget M in the cost's unit (default: parameters), refused where even the backbone alone does not fit."""
    budget = int(budget)
    cost = cost or analytic_cost("parameters", backbone, num_classes, input_shape, shortcut)
    backbone_size = cost.of(backbone)
    if backbone_size > budget:
        what = "parameters " if cost.metric == "parameters" else ""
        raise ValueError(
            f"--budget is {format_cost(cost.metric, budget)} {what}but the backbone {backbone} alone has "
            f"{format_cost(cost.metric, backbone_size)}: raise --budget (e.g. --budget=2x)"
        )
    return budget


def addon_costs(backbone, ops_per_addon, num_classes, input_shape, shortcut="zero_pad"):
    """[stages * ops_per_addon, len(ADDON_OPS)] int64: the parameters each op adds in each slot of a new module."""
    return analytic_cost("parameters", backbone, num_classes, input_shape, shortcut).table(ops_per_addon)
