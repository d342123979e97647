"""--controller=random: uniform choices under the same budget rule, the baseline a NAS result is read against.

Each decision takes one of the choices that still fit (controller.feasible_choices) with equal
probability: the LSTM's masked policy with equal logits, i.e. the policy it starts from. It learns
nothing, so the oracle gives it no rewards; the trials, the reward and their records are the LSTM's.
Its NumPy generator is its whole state, so a resumed search samples what the first run would have.
"""

import numpy as np

from kdas_tf.nas.controller import budget_table, feasible_choices

STATE_FORMAT = "kdas_tf.nas.random_controller/1"


class RandomController:
    """Samples num_decisions tokens uniformly among the feasible choices, decision by decision."""

    def __init__(self, config, *, costs=None, budget=None):
        self.config = config
        self._costs, self._budget = budget_table(costs, budget, config.num_decisions, config.num_choices)
        self._rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(2)[1])

    def sample(self) -> tuple[int, ...]:
        """One architecture; it fits the budget."""
        tokens = [0] * self.config.num_decisions
        for i in range(self.config.num_decisions):  # row i depends on tokens[:i] only
            tokens[i] = int(self._rng.choice(np.flatnonzero(feasible_choices(self._costs, self._budget, tokens)[i])))
        return tuple(tokens)

    def probabilities(self, tokens) -> np.ndarray:
        """The distribution at each step along `tokens`: uniform over the feasible choices, [D, K]."""
        feasible = feasible_choices(self._costs, self._budget, tokens)
        return feasible / feasible.sum(axis=1, keepdims=True)

    def get_state(self) -> dict:
        return {"format": STATE_FORMAT, "rng": self._rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"state format must be {STATE_FORMAT!r}, got {state.get('format')!r} "
                             "(was the search made with another --controller?)")
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        self._rng = rng
