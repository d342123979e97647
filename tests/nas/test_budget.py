"""The budget's cost table: what each op adds in each slot, as count_parameters (and count_macs) count it."""

import numpy as np
import pytest

from kdas_tf import models
from kdas_tf.models.costs import AdditiveCost
from kdas_tf.models.mac_count import count_macs
from kdas_tf.nas.budget import addon_costs, analytic_cost, check_budget, resolve_budget


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


@pytest.mark.parametrize("metric, count", [("parameters", models.count_parameters), ("macs", count_macs)])
def test_a_networks_cost_is_its_count_and_the_sum_of_its_table(metric, count):
    cost = analytic_cost(metric, "resnet8", 10, (28, 28, 1))
    summed = AdditiveCost(metric, cost.backbone, cost.base, cost.per_stage)  # no exact count: the table's sum
    rng = np.random.default_rng(1)
    for _ in range(10):
        arch = models.Architecture("resnet8")
        for _ in range(2):  # two rounds of modules
            arch = arch.with_addons([[models.ADDON_OPS[t] for t in rng.integers(0, 7, 2)] for _ in range(3)])
        assert cost.of(arch) == summed.of(arch) == count(arch, 10, (28, 28, 1))
    with pytest.raises(ValueError, match="cannot price"):
        cost.of("resnet14")


def test_macs_price_pools_and_a_resnet_conv_the_same_at_every_stage():
    costs = analytic_cost("macs", "resnet32", 100, (32, 32, 3)).per_stage
    ops = models.ADDON_OPS.index
    assert (costs[:, ops("skip")] == 0).all() and (costs[:, ops("avgpool3x3")] > 0).all()
    # a stage halves the resolution and doubles the width: H*W*C*C stays, H*W*C halves
    assert costs[0, ops("conv3x3")] == costs[2, ops("conv3x3")] == 32 * 32 * 16 * 16 * 9
    assert costs[0, ops("maxpool3x3")] == 4 * costs[2, ops("maxpool3x3")]


def test_a_budget_in_macs_is_resolved_and_refused_in_macs():
    cost = analytic_cost("macs", "resnet8", 10, (8, 8, 1))
    assert resolve_budget(("multiple", 2.0), "resnet8", 10, (8, 8, 1), cost=cost) == (2 * cost.base, cost.base)
    assert resolve_budget(("absolute", 4e6), "resnet8", 10, (8, 8, 1), cost=cost)[0] == 4_000_000
    with pytest.raises(ValueError, match=r"--budget is 0\.10M MACs but the backbone resnet8 alone has \d"):
        check_budget("resnet8", 100_000, 10, (8, 8, 1), cost=cost)
