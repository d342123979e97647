"""The report's figures as PNG bytes: accuracy against parameters (the paper's Figure 3), or against a budget's
MACs or latency, reward over trials, and how many teacher members are right per training example.

matplotlib runs on its Agg backend: no display is needed, and the bytes go
through storage.write_bytes, so a figure is never half-written.
"""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kdas_tf.models.costs import COST_KEYS, format_cost  # noqa: E402


def pareto_front(points):
    """The (cost, accuracy) points no other point beats at a cost of at most theirs, by cost."""
    front = []
    for cost, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((cost, accuracy))
    return front


def _png(figure):
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()


def _labelled(figure, axes, xlabel, title, legend="lower right"):
    """Axes against validation top-1, with a grid and a legend (where `legend` says)."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel("validation top-1 (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc=legend)
    return figure


# Each budget metric's axis: its label and what the title says the accuracy is against. Costs are in the metric's
# integer unit (parameters, MACs, nanoseconds: models.costs) and drawn in millions of it (M, M MACs, ms).
AXES = {"parameters": ("trainable parameters (M)", "size"),
        "macs": ("multiply-accumulates of one image (M)", "MACs"),
        "latency": ("latency of one image (ms; the trials as the table predicts it)", "predicted latency")}


def accuracy_vs_cost_data(trials, *, metric="parameters", budget=None, found=None, measured_ms=None):
    """What accuracy_vs_cost draws, as (cost in millions of the metric's unit, validation top-1 %) points.

    {"rounds": {round: every finished trial's point}, "front": the Pareto front, drawn out to the budget, "found":
    the found trial's point, "measured": the found network as measured (measured_ms, its top-1) or None}. A trial
    without a cost in `metric` (one recorded before its key existed) is left out.
    """
    key = COST_KEYS[metric]
    done = [t for t in trials if t["val_top1"] is not None and t.get(key) is not None]
    rounds = {r: [(t[key] / 1e6, 100 * t["val_top1"]) for t in done if t["round"] == r]
              for r in sorted({t["round"] for t in done})}
    front = [(cost / 1e6, 100 * accuracy) for cost, accuracy in pareto_front([(t[key], t["val_top1"]) for t in done])]
    if front:  # best accuracy reachable at a cost of at most x, drawn out to the budget
        front.append((max((budget or 0) / 1e6, front[-1][0]), front[-1][1]))
    best = next((t for t in done if t["architecture"] == found), None)
    point = (best[key] / 1e6, 100 * best["val_top1"]) if best else None
    return {"rounds": rounds, "front": front, "found": point,
            "measured": (measured_ms, point[1]) if point and measured_ms is not None else None}


def accuracy_vs_cost(trials, *, metric="parameters", budget, backbone_cost, found=None, measured_ms=None):
    """Every finished trial's validation top-1 against its cost in `metric`, the budget M and the Pareto front.

    trials: dicts with "val_top1" (0..1), "architecture", "round" and the metric's cost (models.costs.COST_KEYS).
    budget, backbone_cost: in the metric's unit; budget None for a budget of another metric (not drawn on this
    axis). measured_ms: the found network's measured latency at the table's speed (a latency axis: the axis is
    the table's), drawn beside its prediction.
    """
    data = accuracy_vs_cost_data(trials, metric=metric, budget=budget, found=found, measured_ms=measured_ms)
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for round_index, points in data["rounds"].items():
        axes.scatter(*zip(*points), s=28, alpha=0.8,
                     label=f"trials, round {round_index + 1}" if round_index else "trials")
    if data["front"]:
        xs, ys = zip(*data["front"])
        axes.step(xs, ys, where="post", color="black", linewidth=1.2, label="Pareto front")
        axes.scatter(xs[:-1], ys[:-1], s=60, facecolors="none", edgecolors="black")
    if data["found"]:
        axes.scatter(*data["found"], marker="*", s=220, color="gold", edgecolors="black", zorder=3,
                     label="found architecture")
    if data["measured"]:
        axes.scatter(*data["measured"], marker="X", s=90, color="tab:red", edgecolors="black", zorder=3,
                     label=f"found, measured: {data['measured'][0]:.4f} ms at the table's speed")
    if budget is not None:
        axes.axvline(budget / 1e6, color="red", linestyle="--", label=f"budget M = {format_cost(metric, budget)}")
    axes.axvline(backbone_cost / 1e6, color="grey", linestyle=":",
                 label=f"backbone {format_cost(metric, backbone_cost)}")
    xlabel, against = AXES[metric]
    return _png(_labelled(figure, axes, xlabel, f"Search trials: accuracy against {against}", legend="best"))


def reward_over_trials(runs):
    """Each run's trial rewards (validation top-1) in the order its controller proposed them, and its best so far.

    runs: [(label, trials)]; several runs (an LSTM and a random search, say) share the axes.
    """
    figure, axes = plt.subplots(figsize=(6.4, 3.6))
    for (label, trials), color in zip(runs, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        done = sorted((t for t in trials if t["val_top1"] is not None), key=lambda t: int(t["trial_id"]))
        order = [int(t["trial_id"]) for t in done]
        rewards = [100 * t["val_top1"] for t in done]
        best = [max(rewards[:i + 1]) for i in range(len(rewards))]
        axes.plot(order, rewards, "o-", color=color, alpha=0.5, label=f"{label}: reward (val top-1)")
        axes.plot(order, best, color=color, drawstyle="steps-post", linewidth=2, label=f"{label}: best so far")
    return _png(_labelled(figure, axes, "trial", "Reward over trials"))


def teacher_agreement(histogram, *, network):
    """Share of training examples that exactly k of the N members classify correctly, k = 0..N."""
    counts = list(range(len(histogram)))
    shares = [100 * h for h in histogram]
    figure, axes = plt.subplots(figsize=(6.4, 3.6))
    bars = axes.bar(counts, shares, color="tab:blue")
    axes.bar_label(bars, labels=[f"{s:.1f}%" for s in shares], fontsize=8)
    axes.set_xticks(counts)
    axes.set_xlabel(f"members right (of {len(histogram) - 1} x {network})")
    axes.set_ylabel("training examples (%)")
    axes.set_ylim(0, 110)
    axes.set_title("Teacher agreement on the training set")
    return _png(figure)


def budget_sweep(points):
    """Figure 3: test top-1 against parameters of the found models (one per budget) and the man-made ones.

    points: dicts with "kind" ("KDAS" or "man-made"), "loss", "parameters", "test_top1", "test_top1_std".
    """
    return test_accuracy_vs_parameters(points, "Accuracy against memory (the paper's Figure 3)")


MARKERS = ("o-", "s--", "^:", "D-.", "v-")


def test_accuracy_vs_parameters(points, title):
    """Test top-1 (mean, seeds' std as error bars) against parameters, one series per (kind, L_T), kinds in
    the order they first appear in `points` (dicts as budget_sweep's)."""
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    kinds = list(dict.fromkeys(p["kind"] for p in points))
    for kind, marker in zip(kinds, MARKERS * len(kinds)):
        for loss in sorted({p["loss"] for p in points}):
            series = sorted((p for p in points if p["kind"] == kind and p["loss"] == loss),
                            key=lambda p: p["parameters"])
            if series:
                axes.errorbar([p["parameters"] / 1e6 for p in series], [100 * p["test_top1"] for p in series],
                              yerr=[100 * p["test_top1_std"] for p in series], fmt=marker, capsize=3,
                              label=f"{kind}, L_T={loss.upper()}")
    axes.set_xlabel("trainable parameters (M)")
    axes.set_ylabel("test top-1 (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    return _png(figure)
