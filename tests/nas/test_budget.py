"""The budget's cost table: what each op adds in each slot, as count_parameters counts it."""

import numpy as np
import pytest

from kdas_tf import models
from kdas_tf.nas.budget import addon_costs, check_budget


@pytest.mark.parametrize("backbone, num_classes, input_shape", [
    ("resnet8", 10, (8, 8, 1)),
    ("resnet32", 100, (32, 32, 3)),
    ("wrn16_2", 100, (32, 32, 3)),
    ("resnet32:conv3x3+skip/sep5x5/avgpool3x3", 200, (64, 64, 3)),  # a later round's backbone
])
def test_a_network_is_its_backbone_plus_the_costs_of_its_new_modules_ops(backbone, num_classes, input_shape):
    costs = addon_costs(backbone, 2, num_classes, input_shape)
    assert costs.shape == (6, len(models.ADDON_OPS)) and costs.dtype == np.int64
    base = models.count_parameters(backbone, num_classes, input_shape)
    rng = np.random.default_rng(0)
    for _ in range(20):
        tokens = rng.integers(0, len(models.ADDON_OPS), 6)
        ops = [tuple(models.ADDON_OPS[t] for t in tokens[2 * s:2 * s + 2]) for s in range(3)]
        arch = models.as_architecture(backbone).with_addons(ops)
        assert models.count_parameters(arch, num_classes, input_shape) == base + costs[np.arange(6), tokens].sum()


def test_skip_and_the_pools_are_free_and_a_wider_stage_costs_more():
    costs = addon_costs("resnet32", 2, 100, (32, 32, 3))
    free = [models.ADDON_OPS.index(op) for op in ("skip", "maxpool3x3", "avgpool3x3")]
    assert (costs[:, free] == 0).all()
    assert (costs[0] == costs[1]).all() and (costs[2] > costs[0]).sum() == 4


def test_a_budget_below_the_backbone_is_refused_with_advice():
    with pytest.raises(ValueError, match=r"--budget is 0\.050M parameters but the backbone resnet8 alone"):
        check_budget("resnet8", 50_000, 10, (8, 8, 1))
