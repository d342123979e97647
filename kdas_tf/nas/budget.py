"""The memory budget M of a search: refused where the backbone alone exceeds it, and what each choice costs.

The add-on operations' parameters add up (count_parameters = backbone + each op at its stage's width +
head), so a choice's cost does not depend on the others: a [decisions, operations] table and the budget
left after the round's backbone are all the controller needs to keep every sample within M
(controller.feasible_choices).
"""

import numpy as np

from kdas_tf import models


def resolve_budget(form, backbone, num_classes, input_shape, shortcut="zero_pad"):
    """(M, the backbone's parameters) for a budget as written (SearchConfig.budget_form): ('multiple', 2.0) is
    twice the backbone's parameters, ('millions', 0.9) is 900,000; refused where the backbone alone exceeds it."""
    backbone = models.as_architecture(backbone)
    backbone_parameters = models.count_parameters(backbone, num_classes, input_shape, shortcut=shortcut)
    unit, value = form
    budget = int(value * backbone_parameters) if unit == "multiple" else int(value * 1e6)
    return check_budget(backbone, budget, num_classes, input_shape, shortcut), backbone_parameters


def check_budget(backbone, budget, num_classes, input_shape, shortcut="zero_pad"):
    """The budget M in parameters, refused where even the backbone alone does not fit in it."""
    budget = int(budget)
    backbone_size = models.count_parameters(backbone, num_classes, input_shape, shortcut=shortcut)
    if backbone_size > budget:
        raise ValueError(
            f"--budget is {budget / 1e6:.3f}M parameters but the backbone {backbone} alone has "
            f"{backbone_size / 1e6:.3f}M: raise --budget (e.g. --budget=2x)"
        )
    return budget


def addon_costs(backbone, ops_per_addon, num_classes, input_shape, shortcut="zero_pad"):
    """[stages * ops_per_addon, len(ADDON_OPS)] int64: the parameters each op adds in each slot of a new module.

    Measured with count_parameters itself (one op in one stage, against an all-skip module), so the table
    agrees with the count the budget is checked by.
    """
    backbone = models.as_architecture(backbone)
    stages = backbone.num_stages

    def parameters(stage, op):
        ops = [(op if s == stage else "skip",) for s in range(stages)]
        return models.count_parameters(backbone.with_addons(ops), num_classes, input_shape, shortcut=shortcut)

    per_stage = [[parameters(s, op) - parameters(s, "skip") for op in models.ADDON_OPS] for s in range(stages)]
    return np.repeat(np.array(per_stage, np.int64), ops_per_addon, axis=0)
