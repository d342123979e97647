"""Is the latency table right? Its predictions for whole networks against their measured latency.

Networks are drawn across the search's range: CANDIDATES sequences of 1..rounds rounds of add-ons drawn uniformly
(the controller's prior), every round's network pooled, sorted by predicted latency, and `count` taken at evenly
spaced ranks, so that the cheap and the costly ends count as much as the crowded middle. The backbone is measured
again beside them (how far the machine drifted since the table). Each network is measured as the table's backbone
was (latency_table.measure_turns: the served network in the table's format, the same timing, all of them in
turns); a network's measured latency is the median over turns, with its order-statistic interval. Reported:
Spearman's rank correlation of predicted against measured latency, the median and the worst relative error
|predicted - measured| / measured, and the median signed error (the table's bias: positive when it over-predicts).

`found_latency` does the same for a search's found network after its export: the served model's LiteRT file as
exported (or the found architecture converted untrained, when that format was not exported), with the backbone
beside it, against the table's prediction and the budget.
"""

import functools

import numpy as np
from scipy import stats

from kdas_tf import models
from kdas_tf.deploy import latency_table
from kdas_tf.runtime import storage

CANDIDATES = 400
# found_latency's numbers that come from the clock: the rest of its record says what was measured, and where.
TIMING = ("measured_ms", "interval_ms", "coverage", "turns", "backbone_measured_ms", "backbone_interval_ms",
          "times_backbone", "times_backbone_interval")


def sample_architectures(table, count, *, rounds, ops_per_addon, seed=0):
    """`count` architecture strings of the table's backbone at evenly spaced ranks of predicted latency."""
    pool = {str(arch): latency_table.predict_ms(table, arch)
            for sample in models.uniform_samples(table["backbone"], rounds, ops_per_addon, CANDIDATES, seed)
            for arch in sample}
    ranked = sorted(pool, key=lambda arch: (pool[arch], arch))
    picks = np.unique(np.linspace(0, len(ranked) - 1, count).round().astype(int))
    return [ranked[i] for i in picks]


def check_table(table, target, architectures, *, measure=None):
    """{"rows": one per network (predicted ms, measured ms with its interval, relative error), "summary":
    summarise(rows)}.

    measure: as latency_table.measure_table takes it (default: convert and time here, in target's format)."""
    measure = measure or functools.partial(latency_table.measure_turns, target=target)
    networks = [table["backbone"], *architectures]
    measured = measure({f"network{i}": ("network", arch) for i, arch in enumerate(networks)})
    rows = []
    for i, arch in enumerate(networks):
        predicted = latency_table.predict_ms(table, arch)
        actual = latency_table.summarise(latency_table.as_turns(measured[f"network{i}"]))
        rows.append({"architecture": arch, "predicted_ms": predicted, "measured_ms": actual["ms"],
                     "measured_interval_ms": actual["interval_ms"],
                     "relative_error": (predicted - actual["ms"]) / actual["ms"], "backbone": i == 0})
    return {"rows": rows, "summary": summarise(rows), "format": table["format"], "threads": table["threads"],
            "machine": latency_table.machine(), "table_machine": table["machine"]}


def summarise(rows):
    """Spearman's rho of predicted against measured, the median and worst |relative error|, the median signed one."""
    predicted = [row["predicted_ms"] for row in rows]
    measured = [row["measured_ms"] for row in rows]
    errors = np.array([row["relative_error"] for row in rows])
    rho = stats.spearmanr(predicted, measured).statistic if len(rows) > 2 else float("nan")
    return {"networks": len(rows), "spearman_rho": float(rho), "median_abs_relative_error": float(np.median(
        np.abs(errors))), "worst_abs_relative_error": float(np.max(np.abs(errors))),
            "median_relative_error": float(np.median(errors))}


def markdown(result):
    """The check as a table of its networks and a line of its summary."""
    lines = ["| network | predicted ms | measured ms | 95% interval | error % |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        name = row["architecture"] + (" (backbone)" if row["backbone"] else "")
        low, high = row.get("measured_interval_ms") or (float("nan"),) * 2
        lines.append(f"| {name} | {row['predicted_ms']:.4f} | {row['measured_ms']:.4f} | {low:.4f}-{high:.4f} | "
                     f"{100 * row['relative_error']:+.1f} |")
    summary = result["summary"]
    lines.append("")
    lines.append(f"{summary['networks']} networks ({result['format']}, {result['threads']} thread(s)): Spearman's "
                 f"rho {summary['spearman_rho']:.3f}; |relative error| median "
                 f"{100 * summary['median_abs_relative_error']:.1f}%, worst "
                 f"{100 * summary['worst_abs_relative_error']:.1f}%; median signed error "
                 f"{100 * summary['median_relative_error']:+.1f}%")
    return "\n".join(lines) + "\n"


def found_latency(table, target, architecture, *, budget_ns, exported=None, kept=None, measure=None):
    """The found network's latency as `table` predicts it and as measured here, against the budget M (ns).

    exported: the served model's .tflite file in target.format, timed as it is; None: `architecture` converted
    untrained (latency does not depend on the weights). The table's backbone is timed in the same turns, and the
    budget is judged as the bench judges a ratio: the found network's time over the backbone's, turn by turn, times
    the table's backbone ("at_table_speed_ms"), since M is in the table's milliseconds and a machine slower or
    busier now than when the table was measured slows both alike. The raw median is kept beside it
    ("within_budget_as_measured"). kept: an earlier record (read_kept), whose timing is reused when it measured the
    same file (by content) or network, in the same format and threads, on this machine. measure: as
    latency_table.measure_turns(described, target=target) takes it (the default): {key: [ms of each turn]}.
    """
    what = {"architecture": str(architecture), "format": target.format, "threads": target.threads,
            "measured": "exported file" if exported else "untrained network",
            "file_sha256": storage.content_sha256(exported) if exported else None, "machine": latency_table.machine()}
    if kept and all(key in kept for key in TIMING) and all(kept.get(key) == value for key, value in what.items()):
        timing = {key: kept[key] for key in TIMING}
    else:
        measure = measure or functools.partial(latency_table.measure_turns, target=target)
        timed = measure({"found": ("file", exported) if exported else ("network", str(architecture)),
                         "backbone": ("network", table["backbone"])})
        found_turns, backbone_turns = (latency_table.as_turns(timed[key]) for key in ("found", "backbone"))
        found, backbone = latency_table.summarise(found_turns), latency_table.summarise(backbone_turns)
        ratio = latency_table.summarise(found_turns / backbone_turns)
        timing = {"measured_ms": found["ms"], "interval_ms": list(found["interval_ms"]),
                  "coverage": found["coverage"], "turns": found["turns"], "backbone_measured_ms": backbone["ms"],
                  "backbone_interval_ms": list(backbone["interval_ms"]), "times_backbone": ratio["ms"],
                  "times_backbone_interval": list(ratio["interval_ms"])}
    budget_ms = budget_ns / 1e6
    at_table_speed = timing["times_backbone"] * table["backbone_ms"]
    return {**what, "predicted_ms": latency_table.predict_ms(table, architecture), **timing,
            "backbone_table_ms": table["backbone_ms"], "at_table_speed_ms": at_table_speed,
            "at_table_speed_interval_ms": [r * table["backbone_ms"] for r in timing["times_backbone_interval"]],
            "budget_ms": budget_ms, "within_budget": at_table_speed <= budget_ms,
            "within_budget_as_measured": timing["measured_ms"] <= budget_ms}


def read_kept(path):
    """The found_latency record kept at `path`, or None (none there, or unreadable: it is measured again)."""
    try:
        kept = storage.read_json(path)
    except (OSError, ValueError):
        return None
    return kept if isinstance(kept, dict) else None
