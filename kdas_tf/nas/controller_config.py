"""What the controller is asked to be and what it is rewarded with, free of TensorFlow: config.py offers and
checks it (and --help answers) without importing it. The controller itself is kdas_tf.nas.controller."""

import dataclasses

import numpy as np

# What chooses the add-ons: the LSTM, or uniform choices under the same budget rule (kdas_tf.nas.random_controller).
KINDS = ("lstm", "random")
# --cost_exponent's range: 0 rewards the validation top-1 alone (the paper), below 0 a cheaper network more
# (MnasNet's soft objective, -0.07); above 0 would reward larger networks, below -1 cost more than accuracy.
COST_EXPONENTS = (-1.0, 0.0)


def check_cost_exponent(exponent):
    """Refuse a --cost_exponent outside COST_EXPONENTS (or not a number) in one line."""
    low, high = COST_EXPONENTS
    if not low <= exponent <= high:
        raise ValueError(f"--cost_exponent={exponent}: give w from {low:g} to {high:g} (0: the validation top-1 "
                         "alone; MnasNet's soft objective -0.07); a w above 0 would reward larger networks")
    return float(exponent)


def soft_reward(accuracy, cost, budget, exponent):
    """MnasNet's soft objective accuracy * (cost / budget)^w; w = 0 returns `accuracy` itself (the paper's reward)."""
    if exponent == 0:
        return accuracy
    return accuracy * (cost / budget) ** exponent


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    """Controller hyperparameters; defaults are ours (PAPER.md section 4), chosen in docs/controller.md."""

    num_decisions: int
    num_choices: int
    units: int = 64
    # 3.5e-4 and 0.95 barely moved the policy in 100 updates (P(best op) 0.143 -> 0.146 for a
    # two-point reward): 5e-3 and 0.8 take it to 0.89 (docs/controller.md, tools/controller_learning.py).
    learning_rate: float = 5e-3
    baseline_decay: float = 0.8
    entropy_weight: float = 1e-4
    seed: int = 0
    kind: str = "lstm"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"ControllerConfig.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("num_decisions", "num_choices", "units"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"ControllerConfig.{name} must be an integer >= 1, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(
                f"ControllerConfig.learning_rate must be > 0, got {self.learning_rate!r}"
            )
        if not 0 <= self.baseline_decay < 1:
            raise ValueError(
                f"ControllerConfig.baseline_decay must be in [0, 1), got {self.baseline_decay!r}"
            )
        if not self.entropy_weight >= 0:
            raise ValueError(
                f"ControllerConfig.entropy_weight must be >= 0, got {self.entropy_weight!r}"
            )
