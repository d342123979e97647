"""What a budget counts (--budget_metric) and the additive form every such cost takes.

A network's parameters, MACs and (as a lookup table predicts it) latency are the backbone's plus what each add-on
op adds at its stage, whatever the other ops are: the add-on ops keep their stage's shape. So an AdditiveCost, the
backbone's cost and a [stages, ops] table, is all the controller needs to mask the choices that no longer fit
(kdas_tf.nas.budget makes the analytic ones, kdas_tf.deploy.latency_table the measured one). Units are integers:
parameters, MACs, nanoseconds.
"""

import dataclasses
from collections.abc import Callable

import numpy as np

from kdas_tf.models.architecture import ADDON_OPS, Architecture, as_architecture

METRICS = ("parameters", "macs", "latency")
# The key of a trial's values (and results) that holds its cost in a metric other than parameters.
COST_KEYS = {"parameters": "parameters", "macs": "macs", "latency": "latency_ns"}


def format_cost(metric: str, value) -> str:
    """A cost as the dry run and the messages print it: 0.150M (parameters), 12.35M MACs, 1.234 ms."""
    if metric == "parameters":
        return f"{value / 1e6:.3f}M"
    if metric == "macs":
        return f"{value / 1e6:.2f}M MACs"
    return f"{value / 1e6:.3f} ms"


@dataclasses.dataclass(frozen=True, eq=False)
class AdditiveCost:
    """A cost of `metric` for networks on `backbone`: base (the backbone alone) plus per_stage[stage, op] for each op.

    exact(arch): the cost counted from the network itself where there is such a count (parameters, MACs); the table
    agrees with it (tested), and it is what the search checks a sample against. None: the table's sum (latency).
    """
    metric: str
    backbone: str
    base: int
    per_stage: np.ndarray  # [stages, len(ADDON_OPS)] int64
    exact: Callable | None = None
    note: str = ""  # where the numbers come from, for the dry run (a latency table's machine and format)

    def table(self, ops_per_addon: int) -> np.ndarray:
        """[stages * ops_per_addon, len(ADDON_OPS)] int64: what each op adds in each slot of a new module."""
        return np.repeat(np.asarray(self.per_stage, np.int64), ops_per_addon, axis=0)

    def of(self, arch: Architecture | str) -> int:
        """The cost of a network of this backbone with any add-ons."""
        arch = as_architecture(arch)
        if arch.backbone != self.backbone:
            raise ValueError(f"a {self.metric} cost of {self.backbone} cannot price {arch}")
        if self.exact is not None:
            return int(self.exact(arch))
        return int(self.base) + sum(int(self.per_stage[stage, ADDON_OPS.index(op)])
                                    for stage, modules in enumerate(arch.addons) for ops in modules for op in ops)

    def format(self, value) -> str:
        return format_cost(self.metric, value)
