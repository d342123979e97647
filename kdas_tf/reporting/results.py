"""A search's results as one JSON-friendly summary and a table in the shape of the paper's Table 2; an
export's deployment table."""

from kdas_tf.models.costs import COST_KEYS, format_cost
from kdas_tf.runtime.rows import ROW_KINDS, row_kind_and_loss

LOSS_NAMES = {"ce": "CE", "kd": "KD", "od": "OD"}


FOUND_RULE = ("the best validation top-1 of every round's trials, ties to the smaller network; each round grows its "
              "own round's best")
SOFT_FOUND_RULE = ("the best reward, val top-1 x (cost / budget)^cost_exponent, of every round's trials, ties to the "
                   "smaller network; each round grows its own round's best")


def collect(*, teacher_report, oracle, found, rows, budget, backbone_parameters, search_loss, exported,
            exported_seed=0, serving=None, budget_metric="parameters", backbone_cost=None, latency=None):
    """Everything a report needs from one run, in plain values. found: the found trial (KDASOracle.best_trial).

    budget is in budget_metric's unit (models.costs); a metric other than parameters is recorded with the
    backbone's and the found network's cost in it (a parameters run's summary is as it always was). latency: a
    latency budget's found network predicted and measured (deploy.latency_check.found_latency), as "latency".
    """
    summary = {
        "teacher": teacher_report,
        "budget": budget,
        "backbone": str(oracle.backbone),
        "backbone_parameters": backbone_parameters,
        "search_loss": search_loss,
        "found_architecture": found.hyperparameters.values["architecture"],
        "found": {  # which trial was found, and by what rule
            "trial_id": found.trial_id, "round": found.hyperparameters.values["round"],
            "val_top1": found.score, "parameters": found.hyperparameters.values["parameters"],
            "rule": FOUND_RULE},
        "trials": [trial_summary(t, oracle.trial_tuners.get(t.trial_id),
                                 reward=oracle.reward(t) if oracle.cost_exponent else None)
                   for t in sorted(oracle.trials.values(), key=lambda t: t.trial_id)],
        "controller": {
            "kind": oracle.controller_config.kind,
            "trial_updates": oracle.trial_updates,
            "repeated_samples": oracle.repeated_samples,
            "repeat_updates": oracle.repeat_updates,
        },
        "final": rows,
        "exported": exported,
        "exported_seed": exported_seed,  # index of the served training among its row's seeds
        "serving": serving,  # why that row (runtime.rows.serving_decision)
    }
    if budget_metric != "parameters":
        key = COST_KEYS[budget_metric]
        summary.update(budget_metric=budget_metric, backbone_cost=backbone_cost)
        summary["found"][key] = found.hyperparameters.values.get(key)
    if latency is not None:
        summary["latency"] = latency
    if oracle.cost_exponent:  # MnasNet's soft objective found it (a run without one records as it always did)
        summary["cost_exponent"] = oracle.cost_exponent
        summary["found"].update(reward=oracle.reward(found), rule=SOFT_FOUND_RULE)
    return summary


def millions(parameters):
    return f"{parameters / 1e6:.3f}M"


def markdown_table(columns, rows):
    """A Markdown table; floats as %.2f, None as '-'."""
    def cell(value):
        return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


TABLE2_COLUMNS = ("model", "L_S", "L_T", "val top-1 %", "test top-1 %", "parameters")


def accuracy(row, split):
    """A row's top-1 in %: a float for one seed, "mean ± std" over several."""
    if len(row.get("seeds", ())) > 1:
        return f"{100 * row[split]['top1']:.2f} ± {100 * row[split]['top1_std']:.2f}"
    return 100 * row[split]["top1"]


def table2_rows(summary):
    """Teacher, plain student, man-made networks and found model with each L_T: (model, L_S, L_T, val %,
    test %, parameters)."""
    teacher = summary["teacher"]
    rows = [(f"Teacher ({teacher['num_teachers']} x {teacher['network']})", "-", "CE", None,
             100 * teacher["ensemble_test_top1"], teacher["num_teachers"] * teacher["parameters_per_member"])]
    final = summary["final"]

    def order(key):  # losses in CE, KD, OD order (results.json sorts its keys)
        kind, loss = row_kind_and_loss(key)
        return ROW_KINDS.index(kind), final[key]["parameters"], list(LOSS_NAMES).index(loss)

    for key in sorted(final, key=order):
        row = final[key]
        kind, loss = row_kind_and_loss(key)
        name = {"student": f"Student {summary['backbone']}", "manmade": f"{row['architecture']} (man-made)",
                "kdas": f"KDAS {row['architecture']}"}[kind]
        search_loss = LOSS_NAMES[summary["search_loss"]] if kind == "kdas" else "-"
        rows.append((name, search_loss, LOSS_NAMES[loss], accuracy(row, "val"), accuracy(row, "test"),
                     row["parameters"]))
    return rows


def table2_markdown(summary):
    """Table 2's rows as Markdown, accuracy % and memory, with the budget underneath."""
    rows = [(*row[:-1], millions(row[-1])) for row in table2_rows(summary)]
    return (markdown_table(TABLE2_COLUMNS, rows) + "\n"
            + budget_line(summary) + "\n")


def budget_text(summary):
    """M as its metric says it: 0.150M (parameters), 12.35M MACs, 0.280 ms."""
    return format_cost(summary.get("budget_metric", "parameters"), summary["budget"])


def budget_line(summary):
    """The budget under Table 2: M and the backbone's cost in the budget's metric."""
    metric = summary.get("budget_metric", "parameters")
    if metric == "parameters":
        return (f"Budget M = {millions(summary['budget'])}; backbone {summary['backbone']} = "
                f"{millions(summary['backbone_parameters'])}.")
    return (f"Budget M = {budget_text(summary)} ({metric}); backbone {summary['backbone']} = "
            f"{format_cost(metric, summary['backbone_cost'])}, {millions(summary['backbone_parameters'])} parameters.")


def latency_line(found):
    """A latency budget's found network: predicted and measured latency against the budget, and the backbone
    measured beside it against the table (results.json's "latency": deploy.latency_check.found_latency)."""
    low, high = found["interval_ms"]
    at_low, at_high = found["at_table_speed_interval_ms"]
    return (f"Found network {found['architecture']} ({found['measured']}, {found['format']}, {found['threads']} "
            f"thread(s)): predicted {found['predicted_ms']:.4f} ms; measured {found['measured_ms']:.4f} ms "
            f"[{low:.4f}, {high:.4f}], {found['times_backbone']:.3f}x the backbone timed beside it "
            f"({found['backbone_measured_ms']:.4f} ms now, {found['backbone_table_ms']:.4f} ms in the table), so "
            f"{found['at_table_speed_ms']:.4f} ms [{at_low:.4f}, {at_high:.4f}] at the table's speed; budget "
            f"{found['budget_ms']:.4f} ms: {'within' if found['within_budget'] else 'over'} it at the table's speed, "
            f"{'within' if found['within_budget_as_measured'] else 'over'} it as measured now.")


def trial_summary(trial, tuner_id=None, reward=None):
    """A JSON-friendly row for reports: id, worker, status, architecture, parameters (and the cost a budget of
    another metric counts: macs, latency_ns), val top-1 (and the reward, when --cost_exponent made it another)."""
    values = trial.hyperparameters.values
    row = {
        "trial_id": trial.trial_id,
        "tuner_id": tuner_id,
        "status": trial.status,
        "architecture": values.get("architecture"),
        "round": values.get("round"),
        "parameters": values.get("parameters"),
        "val_top1": trial.score,
        "message": (trial.message or "").strip().splitlines()[-1:] or None,
    }
    row.update({key: values[key] for key in COST_KEYS.values() if key != "parameters" and key in values})
    if reward is not None:
        row["reward"] = reward
    return row


DEPLOYMENT_COLUMNS = ("format", "size KB", "test top-1 %", "agreement with SavedModel %", "latency ms (1 image)")


def deployment_markdown(rows):
    """An export's formats (kdas_tf.deploy.litert's deployment.json rows) as a Markdown table."""
    return markdown_table(DEPLOYMENT_COLUMNS, [
        (r["format"], r["size_kb"], 100 * r["test_top1"], 100 * r["agreement"], r["latency_ms"]) for r in rows])
