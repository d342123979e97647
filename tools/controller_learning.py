"""How fast the controller learns at the trial counts a search gives it (docs/controller.md).

    python -m tools.controller_learning [--updates=100] [--seeds=3]

A synthetic reward stands in for a 10-epoch validation accuracy: 0.60, plus `gain` (0.02: two points)
for every decision that takes the best operation (conv3x3), plus Gaussian noise of `noise` std (the
seed-to-seed spread of a short training). One update per sample, as the oracle makes one per trial.
Prints P(best op) (the mean over decisions of the policy's probability of the best op, along the
all-best path) after 25, 50 and 100 updates: the mean over seeds and the worst seed.
"""

import argparse
import itertools

import numpy as np

from kdas_tf.nas.controller import Controller, ControllerConfig

BEST = 1  # conv3x3 in models.ADDON_OPS
NUM_CHOICES = 7


def p_best(controller, num_decisions):
    return float(controller.probabilities((BEST,) * num_decisions)[:, BEST].mean())


def learning_curve(*, num_decisions, learning_rate, baseline_decay, entropy_weight, noise, seed, checkpoints,
                   gain=0.02):
    """P(best op) after each number of updates in `checkpoints`."""
    controller = Controller(ControllerConfig(
        num_decisions=num_decisions, num_choices=NUM_CHOICES, learning_rate=learning_rate,
        baseline_decay=baseline_decay, entropy_weight=entropy_weight, seed=seed))
    rng = np.random.default_rng(1000 + seed)
    curve = []
    for step in range(1, max(checkpoints) + 1):
        tokens = controller.sample()
        controller.update(tokens, 0.60 + gain * tokens.count(BEST) + rng.normal(0.0, noise))
        if step in checkpoints:
            curve.append(p_best(controller, num_decisions))
    return curve


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--num_decisions", type=int, default=6, help="3 stages x 2 ops (digits and ResNet-32)")
    parser.add_argument("--learning_rates", default="3.5e-4,1e-3,3.5e-3,1e-2")
    parser.add_argument("--baseline_decays", default="0.8,0.95")
    parser.add_argument("--entropy_weights", default="1e-4")
    parser.add_argument("--noises", default="0.015")
    parser.add_argument("--gain", type=float, default=0.02, help="reward of the best op per decision")
    args = parser.parse_args()
    checkpoints = sorted({max(1, args.updates // 4), max(1, args.updates // 2), args.updates})
    floats = lambda text: [float(v) for v in text.split(",")]
    print(f"num_decisions={args.num_decisions}, gain {args.gain:g} per decision, {args.seeds} seeds; "
          f"P(best op) starts at {1 / NUM_CHOICES:.3f}")
    print("| lr | baseline decay | entropy weight | noise std | "
          + " | ".join(f"after {c} (mean / worst)" for c in checkpoints) + " |")
    print("|---|---|---|---|" + "---|" * len(checkpoints))
    for lr, decay, entropy, noise in itertools.product(floats(args.learning_rates), floats(args.baseline_decays),
                                                      floats(args.entropy_weights), floats(args.noises)):
        curves = np.array([learning_curve(num_decisions=args.num_decisions, learning_rate=lr, baseline_decay=decay,
                                          entropy_weight=entropy, noise=noise, seed=seed, checkpoints=checkpoints,
                                          gain=args.gain)
                           for seed in range(args.seeds)])
        cells = " | ".join(f"{m:.3f} / {w:.3f}" for m, w in zip(curves.mean(axis=0), curves.min(axis=0)))
        print(f"| {lr:g} | {decay:g} | {entropy:g} | {noise:g} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
