"""The bench's rows: each ratio computed turn by turn within its group, summarised (stats), and printed.

A row divides a measurement by a reference of the same group; both are read from the same turn, and a
derived reference (the online bound from the student step and the member forward) is computed from that
turn's rates too, never from rates of different moments.
"""

import typing

from kdas_tf.reporting import stats


class Row(typing.NamedTuple):
    """A ratio of the table: measurement / reference in each turn of `group`; a target is a sense and a value."""

    measurement: str
    reference: str
    group: str
    sense: typing.Optional[str] = None  # ">=" or "<="
    target: typing.Optional[float] = None


def online_bound(num_teachers):
    """One student step plus N member forwards, each at the rate of its turn: 1 / (1/step + N/forward)."""
    return lambda rate: 1.0 / (1.0 / rate["custom_step_ce"] + num_teachers / rate["teacher_forward"])


def ensemble_forward(num_teachers):
    """The N members' forward at the rate one member's forward had in the turn."""
    return lambda rate: rate["teacher_forward"] / num_teachers


def per_turn(turns, name, derived):
    """The value of `name` in each turn: measured there, or derived (derived[name](turn)) from that turn alone."""
    return [derived[name](turn) if name in derived else turn[name] for turn in turns]


def compare(turns, rows, derived=None, units=None):
    """One summarised row (stats.summarise, with its names and unit) per Row; turns: {group: [{name: value}]}."""
    derived, units = derived or {}, units or {}
    table = []
    for row in rows:
        group = turns[row.group]
        summary = stats.summarise(per_turn(group, row.measurement, derived), per_turn(group, row.reference, derived),
                                  row.sense, row.target)
        table.append({"measurement": row.measurement, "reference": row.reference, "group": row.group,
                      "unit": units.get(row.measurement, "images/s"), **summary})
    return table


def format_table(table):
    """Markdown: value and reference (medians over turns), the median ratio, its interval, the verdict."""
    lines = ["| measurement | value | reference | value | ratio | 95% interval | turns | target | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in table:
        unit, (low, high) = row["unit"], row["interval"]
        interval = f"{low:.2f}-{high:.2f}x"
        if row["coverage"] < stats.CONFIDENCE:  # too few turns for 95%: say what the min-max covers
            interval += f" ({row['coverage']:.0%})"
        lines.append(
            f"| {row['measurement']} | {row['value']:.4g} {unit} | {row['reference']} | "
            f"{row['reference_value']:.4g} {unit} | {row['ratio']:.2f}x | {interval} | {row['turns']} | "
            f"{row['target'] or ''} | {row['verdict'] or ''} |"
        )
    return "\n".join(lines)


def exit_status(table):
    """1 when a row missed its target, else 0 (met and undecided rows alike)."""
    return int(any(row["verdict"] == "missed" for row in table))
