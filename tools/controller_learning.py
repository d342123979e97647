"""How fast the controller learns at the trial counts a search gives it (docs/controller.md).

    python -m tools.controller_learning [--updates=100] [--seeds=3]
    python -m tools.controller_learning --rounds=3 --trials_per_round=33 [--seeds=5]

A synthetic reward stands in for a 10-epoch validation accuracy: 0.60, plus `gain` (0.02: two points)
for every decision that takes the best operation (conv3x3), plus Gaussian noise of `noise` std (the
seed-to-seed spread of a short training). One update per sample, as the oracle makes one per trial.
Prints P(best op) (the mean over decisions of the policy's probability of the best op, along the
all-best path) after 25, 50 and 100 updates: the mean over seeds and the worst seed.

With --rounds, a whole search is driven through kdas_tf.nas.rounds.Rounds as the oracle drives it (repeats
included, the budget not binding), the reward counting the newest module's conv3x3s, and P(best op) is printed
at the end of every round: for the controller carried across rounds (what the search does) and for a fresh
controller every round (what it did before).
"""

import argparse
import dataclasses
import functools
import itertools

import numpy as np

from kdas_tf import models
from kdas_tf.nas.budget import addon_costs
from kdas_tf.nas.controller import Controller, ControllerConfig
from kdas_tf.nas.rounds import Rounds, slot_names

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


def rounds_curve(*, num_rounds, trials_per_round, seed, fresh, noise=0.015, gain=0.02):
    """P(best op) at the end of each round of a search on a resnet8 backbone (3 stages x 2 ops)."""
    shape = dict(num_classes=10, input_shape=(8, 8, 1))
    backbone = models.Architecture("resnet8")
    config = ControllerConfig(num_decisions=6, num_choices=NUM_CHOICES, seed=seed)
    rounds = Rounds(backbone=backbone, budget=100 * models.count_parameters(backbone, **shape),
                    costs=addon_costs(backbone, 2, **shape), controller_config=config,
                    parameters=functools.partial(models.count_parameters, **shape), rounds=num_rounds,
                    trials_per_round=trials_per_round, ops_per_addon=2, max_samples_per_trial=200)
    rng = np.random.default_rng(1000 + seed)
    curve = []
    for round_index in range(num_rounds):
        trained = []
        while len(trained) < trials_per_round and (values := rounds.propose(set())) is not None:
            newest = [values[name] for name in slot_names(3, 2)]
            reward = 0.60 + gain * newest.count("conv3x3") + rng.normal(0.0, noise)
            rounds.record(values, reward)
            trained.append((reward, values["architecture"]))
        curve.append(p_best(rounds.controller, 6))
        if round_index + 1 < num_rounds:
            rounds.start_next(max(trained)[1])
            if fresh:  # the search before the controller was carried: a new one with the round's seed
                rounds.controller = Controller(dataclasses.replace(config, seed=seed + round_index + 1),
                                               costs=rounds.costs,
                                               budget=rounds.budget - rounds.parameters(rounds.backbone()))
    return curve


def main_rounds(args):
    print(f"{args.rounds} rounds x {args.trials_per_round} trials, gain {args.gain:g} per decision, noise "
          f"{float(args.noises.split(',')[0]):g}, {args.seeds} seeds; P(best op) at the end of each round "
          f"(mean / worst seed); uniform {1 / NUM_CHOICES:.3f}")
    print("| controller | " + " | ".join(f"round {r + 1}" for r in range(args.rounds)) + " |")
    print("|---|" + "---|" * args.rounds)
    for fresh in (False, True):
        curves = np.array([rounds_curve(num_rounds=args.rounds, trials_per_round=args.trials_per_round, seed=seed,
                                        fresh=fresh, noise=float(args.noises.split(",")[0]), gain=args.gain)
                           for seed in range(args.seeds)])
        cells = " | ".join(f"{m:.3f} / {w:.3f}" for m, w in zip(curves.mean(axis=0), curves.min(axis=0)))
        print(f"| {'fresh each round' if fresh else 'carried across rounds'} | {cells} |", flush=True)
        print("  per seed, last round: " + ", ".join(f"{c:.3f}" for c in curves[:, -1]), flush=True)


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
    parser.add_argument("--rounds", type=int, default=0, help="drive a whole search of this many rounds")
    parser.add_argument("--trials_per_round", type=int, default=33)
    args = parser.parse_args()
    if args.rounds:
        return main_rounds(args)
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
