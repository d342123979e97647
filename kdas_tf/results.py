"""A search's results as one JSON-friendly summary and a table in the shape of the paper's Table 2."""

from kdas_tf.oracle import trial_summary

LOSS_NAMES = {"ce": "CE", "kd": "KD", "od": "OD"}


def collect(*, teacher_report, oracle, found, rows, budget, backbone_parameters, search_loss, exported):
    """Everything a report needs from one run, in plain values."""
    return {
        "teacher": teacher_report,
        "budget": budget,
        "backbone": str(oracle.backbone),
        "backbone_parameters": backbone_parameters,
        "search_loss": search_loss,
        "found_architecture": str(found),
        "trials": [trial_summary(t, oracle.trial_tuners.get(t.trial_id))
                   for t in sorted(oracle.trials.values(), key=lambda t: t.trial_id)],
        "controller": {
            "trial_updates": oracle.trial_updates,
            "over_budget_samples": oracle.over_budget_samples,
            "repeated_samples": oracle.repeated_samples,
        },
        "final": rows,
        "exported": exported,
    }


def _millions(parameters):
    return f"{parameters / 1e6:.3f}M"


def table2_markdown(summary):
    """Teacher, plain student and found model with each L_T: accuracy % (memory), as in Table 2."""
    teacher = summary["teacher"]
    lines = [
        "| model | L_S | L_T | val top-1 % | test top-1 % | parameters |",
        "|---|---|---|---|---|---|",
        f"| Teacher ({teacher['num_teachers']} x {teacher['network']}) | - | CE | - | "
        f"{100 * teacher['ensemble_test_top1']:.2f} | "
        f"{_millions(teacher['num_teachers'] * teacher['parameters_per_member'])} |",
    ]
    for key, row in summary["final"].items():
        role, loss = key.split("_", 1)
        name = f"Student {summary['backbone']}" if role == "student" else f"KDAS {row['architecture']}"
        search_loss = "-" if role == "student" else LOSS_NAMES[summary["search_loss"]]
        lines.append(
            f"| {name} | {search_loss} | {LOSS_NAMES[loss]} | {100 * row['val']['top1']:.2f} | "
            f"{100 * row['test']['top1']:.2f} | {_millions(row['parameters'])} |"
        )
    lines.append("")
    lines.append(f"Budget M = {_millions(summary['budget'])}; backbone {summary['backbone']} = "
                 f"{_millions(summary['backbone_parameters'])}.")
    return "\n".join(lines) + "\n"
