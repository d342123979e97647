"""The KDAS controller: an LSTM policy over add-on operations, trained by REINFORCE (PAPER.md 4).

A sample is `num_decisions` tokens (stages x slots), each one of `num_choices`
operations, emitted one at a time: the embedding of each token is the next
step's LSTM input, and the first input is a learned start embedding (row
`num_choices` of the embedding table).

Design choices:
- One softmax head per decision (not one shared head). Each decision is a
  different slot of a different stage (other width and resolution), so the
  best operation may differ by position; a per-decision head gives every slot
  its own logit offsets instead of making the LSTM encode its position in the
  state. It costs num_decisions * (units + 1) * num_choices weights (2.7k at the
  defaults), next to the LSTM's 33k.
- Baseline: an exponential moving average of the rewards, initialised by the
  first reward. The advantage uses the baseline *before* it sees the current
  reward (b_before), so the baseline does not depend on the reward it is
  subtracted from. Hence the first update has advantage 0 (entropy term only):
  with one reward there is nothing yet to compare it with.
- All weights start uniform in [-0.1, 0.1] (as in ENAS), drawn from a NumPy
  generator, so the initial policy is close to uniform and the same seed gives
  the same weights on every Keras/TF version.
- Sampling draws its uniforms from a seeded NumPy generator on the host and
  turns them into tokens by inverse CDF inside one compiled graph: one call per
  sample, and the generator's state is plain data for get_state/set_state.
- A budget, when given, is a constraint of the policy, not a penalty: `costs`
  [D, K] is what each choice adds (parameters), `budget` what the choices may
  add in all. A choice is feasible when it still fits with every later decision
  at its cheapest (`feasible_choices`); infeasible logits are masked out before
  the softmax, in sampling and in the update alike, so every sample fits, the
  log-prob REINFORCE follows is the masked policy's, and no reward ever stands
  for "over budget" (a reward-0 penalty would pull the baseline down and give
  the next real candidate an advantage ten times the real differences).
"""

import base64
import io
import math

import keras
import numpy as np
import tensorflow as tf

from kdas_tf.nas.controller_config import ControllerConfig

STATE_FORMAT = "kdas_tf.nas.controller/1"
INIT_SCALE = 0.1
# A masked logit: exp() of it is exactly 0, and 0 * it is 0 (-inf would give nan in the entropy).
MASKED_LOGIT = -1e9


def budget_table(costs, budget, num_decisions, num_choices):
    """(costs as int64 [D, K], budget as int): no budget is zero costs; refuses a budget nothing fits."""
    if costs is None:
        return np.zeros((num_decisions, num_choices), np.int64), 0
    table = np.asarray(costs)
    if table.shape != (num_decisions, num_choices) or not np.issubdtype(table.dtype, np.integer) or table.min() < 0:
        raise ValueError(f"costs must be non-negative integers of shape ({num_decisions}, {num_choices}), "
                         f"got {costs!r}")
    if budget is None or int(budget) < table.min(axis=1).sum():
        raise ValueError(f"budget {budget!r} is below the cheapest sample's cost {table.min(axis=1).sum()}")
    return table.astype(np.int64), int(budget)


def feasible_choices(costs, budget, tokens):
    """[D, K] bool: choice k of decision i fits after tokens[:i] with every later decision at its cheapest.

    costs [D, K] integers, budget an integer, tokens [D] (only tokens[:i] matter for row i).
    """
    chosen = costs[np.arange(len(tokens)), np.asarray(tokens)]
    spent_before = np.concatenate([[0], np.cumsum(chosen)[:-1]])
    cheapest_after = np.concatenate([np.cumsum(costs.min(axis=1)[::-1])[::-1][1:], [0]])
    return costs <= (budget - spent_before - cheapest_after)[:, np.newaxis]


def _encode_array(array):
    """An array as base64 of its .npy bytes: exact dtype and shape, no pickle."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _decode_array(text):
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


class Controller:
    """LSTM policy that samples add-on operation tokens and learns from their rewards."""

    def __init__(self, config: ControllerConfig, *, costs=None, budget=None):
        """costs [D, K] integers: what each choice adds; budget: what the choices may add in all (None: no limit)."""
        self.config = config
        d, k, units = config.num_decisions, config.num_choices, config.units
        self._costs, self._budget = budget_table(costs, budget, d, k)
        init_seed, sample_seed = np.random.SeedSequence(config.seed).spawn(2)
        self._rng = np.random.default_rng(sample_seed)
        self._baseline = None
        self._update_count = 0

        # float32 explicitly: a global mixed-precision policy set for the
        # candidates must not change the controller's numerics.
        self._embedding = keras.layers.Embedding(
            k + 1, units, dtype="float32", name="controller_embedding"
        )
        self._lstm = keras.layers.LSTMCell(units, dtype="float32", name="controller_lstm")
        self._heads = [
            keras.layers.Dense(k, dtype="float32", name=f"controller_head_{i}") for i in range(d)
        ]
        self._optimizer = keras.optimizers.Adam(config.learning_rate, name="controller_adam")

        # Build every weight now, so get_state works before the first update.
        start = self._embedding(tf.constant([k]))
        h, _ = self._lstm(start, self._zero_state())
        for head in self._heads:
            head(h)
        self._variables = (
            self._embedding.trainable_variables
            + self._lstm.trainable_variables
            + [v for head in self._heads for v in head.trainable_variables]
        )
        init_rng = np.random.default_rng(init_seed)
        for v in self._variables:
            v.assign(init_rng.uniform(-INIT_SCALE, INIT_SCALE, v.shape).astype(np.float32))
        self._optimizer.build(self._variables)
        # The learning rate is config, not state: restoring never overrides it.
        self._optimizer_variables = [
            v for v in self._optimizer.variables if v is not self._optimizer.learning_rate
        ]

        # XLA-compiled: every search trial resets Keras (clear_session, set_random_seed), which
        # clears TensorFlow's kernel cache, and plain tf.functions are then instantiated again:
        # 0.3 s per trial for these three, against 10 ms from XLA's cache, which survives it.
        # The costs and the budget are inputs, not constants: one compiled program serves every round.
        self._sample_fn = tf.function(
            self._sample_tokens, jit_compile=True, input_signature=[
                tf.TensorSpec([d], tf.float32), tf.TensorSpec([d, k], tf.int64), tf.TensorSpec([], tf.int64)],
        )
        self._logits_fn = tf.function(
            self._logits_along, jit_compile=True,
            input_signature=[tf.TensorSpec([d], tf.int32), tf.TensorSpec([d, k], tf.bool)],
        )
        self._train_fn = tf.function(
            self._train_step, jit_compile=True, input_signature=[
                tf.TensorSpec([d], tf.int32), tf.TensorSpec([d, k], tf.bool), tf.TensorSpec([], tf.float32)],
        )

    # ---- the policy, as graphs ----

    def _zero_state(self):
        zeros = tf.zeros([1, self.config.units], tf.float32)
        return [zeros, zeros]

    def _logits_along(self, tokens, feasible):
        """Masked logits of every decision with `tokens` fed back: tokens [D], feasible [D, K] -> [D, K]."""
        inputs = tf.concat([[self.config.num_choices], tokens[:-1]], axis=0)
        embedded = self._embedding(inputs)  # [D, units]
        state = self._zero_state()
        logits = []
        for i, head in enumerate(self._heads):
            h, state = self._lstm(embedded[i : i + 1], state)
            logits.append(head(h)[0])
        return tf.where(feasible, tf.stack(logits), MASKED_LOGIT)

    def _sample_tokens(self, uniforms, costs, budget):
        """Tokens drawn by inverse CDF of each step's masked softmax: uniforms [D] in [0, 1) -> [D].

        Step i's mask is feasible_choices' row i, computed as the tokens are drawn.
        """
        k = self.config.num_choices
        cheapest_after = tf.cumsum(tf.reduce_min(costs, axis=1), reverse=True, exclusive=True)  # [D]
        spent = tf.constant(0, tf.int64)
        token = tf.constant([k], tf.int32)
        state = self._zero_state()
        tokens = []
        for i, head in enumerate(self._heads):
            h, state = self._lstm(self._embedding(token), state)
            feasible = costs[i] <= budget - spent - cheapest_after[i]
            cdf = tf.cumsum(tf.nn.softmax(tf.where(feasible, head(h)[0], MASKED_LOGIT)))
            # `<=` skips a masked choice (a flat step of the CDF), even at u = 0; the clamp guards
            # against the float32 CDF ending just below u, onto the last feasible choice.
            chosen = tf.reduce_sum(tf.cast(cdf <= uniforms[i], tf.int32))
            chosen = tf.minimum(chosen, tf.reduce_max(tf.where(feasible, tf.range(k), -1)))
            spent += tf.gather(costs[i], chosen)
            token = chosen[tf.newaxis]
            tokens.append(chosen)
        return tf.stack(tokens)

    def _train_step(self, tokens, feasible, advantage):
        """One REINFORCE + entropy step on `tokens` [D] under the mask `feasible` [D, K] -> pre-update
        (loss, log_prob, entropy), all of the masked policy."""
        with tf.GradientTape() as tape:
            log_probs = tf.nn.log_softmax(self._logits_along(tokens, feasible))  # [D, K]
            log_prob = tf.reduce_sum(tf.gather(log_probs, tokens[:, tf.newaxis], batch_dims=1))
            entropy = -tf.reduce_sum(tf.exp(log_probs) * log_probs)
            loss = -advantage * log_prob - self.config.entropy_weight * entropy
        grads = tape.gradient(loss, self._variables)
        self._optimizer.apply_gradients(zip(grads, self._variables))
        return loss, log_prob, entropy

    # ---- the public API ----

    def _check_tokens(self, tokens):
        d, k = self.config.num_decisions, self.config.num_choices
        array = np.asarray(tokens)
        if (
            array.shape != (d,)
            or not np.issubdtype(array.dtype, np.integer)
            or array.min() < 0
            or array.max() >= k
        ):
            raise ValueError(
                f"tokens must be num_decisions={d} integers in [0, num_choices={k}), got {tokens!r}"
            )
        feasible = feasible_choices(self._costs, self._budget, array)
        if not feasible[np.arange(d), array].all():
            raise ValueError(f"tokens {tokens!r} cost {self._costs[np.arange(d), array].sum()}, over the "
                             f"budget {self._budget}: the policy never samples them")
        return tf.constant(array, tf.int32), tf.constant(feasible)

    def sample(self) -> tuple[int, ...]:
        """One architecture: num_decisions tokens drawn from the current policy; they fit the budget."""
        uniforms = self._rng.random(self.config.num_decisions).astype(np.float32)
        tokens = self._sample_fn(tf.constant(uniforms), tf.constant(self._costs), tf.constant(self._budget, tf.int64))
        return tuple(int(t) for t in tokens.numpy())

    def log_prob(self, tokens) -> float:
        """log pi(tokens) under the current weights and the budget's mask (sum over decisions)."""
        tokens, feasible = self._check_tokens(tokens)
        log_probs = tf.nn.log_softmax(self._logits_fn(tokens, feasible))
        return float(tf.reduce_sum(tf.gather(log_probs, tokens[:, tf.newaxis], batch_dims=1)))

    def probabilities(self, tokens) -> np.ndarray:
        """The masked policy's distribution at each step along `tokens`: [num_decisions, num_choices]."""
        return tf.nn.softmax(self._logits_fn(*self._check_tokens(tokens))).numpy()

    def update(self, tokens, reward: float) -> dict:
        """One REINFORCE step for `tokens` (recomputed under the current weights) and their reward.

        advantage = reward - b_before; b <- decay * b + (1 - decay) * reward
        (the first reward initialises b, so the first advantage is 0);
        loss = -advantage * log_prob(tokens) - entropy_weight * entropy, minimised by Adam.
        The returned loss, log_prob and entropy are those before the step.
        """
        tokens, feasible = self._check_tokens(tokens)
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward!r}")
        baseline = reward if self._baseline is None else self._baseline
        advantage = reward - baseline
        loss, log_prob, entropy = self._train_fn(tokens, feasible, tf.constant(advantage, tf.float32))
        decay = self.config.baseline_decay
        self._baseline = decay * baseline + (1.0 - decay) * reward
        self._update_count += 1
        return {
            "loss": float(loss),
            "baseline": self._baseline,
            "advantage": advantage,
            "entropy": float(entropy),
            "log_prob": float(log_prob),
        }

    def set_budget(self, budget) -> None:
        """What the choices may add from now on (a new round's budget left); the policy learnt so far is kept."""
        self._costs, self._budget = budget_table(self._costs, budget, self.config.num_decisions,
                                                 self.config.num_choices)

    @property
    def update_count(self) -> int:
        return self._update_count

    @property
    def baseline(self):
        """The moving-average baseline, or None before the first update."""
        return self._baseline

    def get_state(self) -> dict:
        """Everything needed to continue exactly, as JSON data (arrays as base64 .npy bytes)."""
        return {
            "format": STATE_FORMAT,
            "weights": {v.path: _encode_array(v.numpy()) for v in self._variables},
            "optimizer": {v.path: _encode_array(v.numpy()) for v in self._optimizer_variables},
            "baseline": self._baseline,
            "update_count": self._update_count,
            "rng": self._rng.bit_generator.state,
        }

    def set_state(self, state: dict) -> None:
        """Restore get_state's output; the next sample() and update() match the original's."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"state format must be {STATE_FORMAT!r}, got {state.get('format')!r}")
        assignments = []
        groups = (("weights", self._variables), ("optimizer", self._optimizer_variables))
        for key, variables in groups:
            saved = state[key]
            expected = {v.path for v in variables}
            if set(saved) != expected:
                raise ValueError(
                    f"state[{key!r}] holds {sorted(saved)},"
                    f" this controller expects {sorted(expected)}"
                )
            for v in variables:
                value = _decode_array(saved[v.path])
                if tuple(value.shape) != tuple(v.shape):
                    raise ValueError(
                        f"state[{key!r}][{v.path!r}] has shape {value.shape},"
                        f" expected {tuple(v.shape)}"
                        " (was it saved with another num_decisions, num_choices or units?)"
                    )
                assignments.append((v, value))
        # Validate everything before touching anything, so a bad state leaves us unchanged.
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        for v, value in assignments:
            v.assign(value)
        self._rng = rng
        self._baseline = None if state["baseline"] is None else float(state["baseline"])
        self._update_count = int(state["update_count"])
