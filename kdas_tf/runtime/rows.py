"""The final rows of a run, in one place: their names, their plan, one row's seeds combined, and the rule that
picks the row and the training that are served.

A row is a network trained from scratch with one L_T: student_LOSS (the plain backbone), kdas_LOSS (the found
architecture) and manmade_NETWORK_LOSS (a man-made network of similar size); its seed K > 0 is ROW_seedK.
The plan that names a run's rows, the parser the tables and the sweep read them with, and the rule that
picks one (serving) are here. A budget sweep's own man-made rows (sweep_row) are not a run's final rows.
"""

import re

import numpy as np

LOSSES = ("ce", "kd", "od")  # L_S and L_T: cross-entropy, Hinton's KD, oracle KD (kdas_tf.distill.losses)
ROW_KINDS = ("student", "manmade", "kdas")  # Table 2's order: the plain student, man-made networks, KDAS
# After validation top-1 and size, a tie goes to the loss the paper proposes, then to Hinton's KD: rows of one
# run share the found architecture, so an exact tie in validation (digits: three rows at 100%) ends here.
LOSS_ORDER = ("od", "kd", "ce")


def final_rows(search, found, manmade):
    """[(row, network or architecture, loss)] of the final trainings, in the order they run: the backbone with
    each --student_loss, then `found` and each network of `manmade` with each --final_loss.

    search: the run's config.SearchConfig (its backbone, student_loss and final_loss).
    """
    return ([(f"student_{loss}", search.backbone, loss) for loss in search.student_loss]
            + [(f"kdas_{loss}", found, loss) for loss in search.final_loss]
            + [(f"manmade_{network}_{loss}", network, loss) for network in manmade for loss in search.final_loss])


def sweep_row(network, loss):
    """A man-made row of a budget sweep (kdas_tf.budget_curve): NETWORK_LOSS, beside the sweep's per-budget runs."""
    return f"{network}_{loss}"


def row_kind_and_loss(row):
    """'kdas_od' -> ('kdas', 'od'); 'manmade_resnet56_kd' -> ('manmade', 'kd')."""
    return row.split("_", 1)[0], row.rsplit("_", 1)[1]


def final_name(row, seed_index):
    """The folder (and TensorBoard run) of one training of a row: ROW for seed 0, ROW_seedK after it."""
    return row if seed_index == 0 else f"{row}_seed{seed_index}"


def train_name(arch, loss):
    """python -m kdas_tf.train's folder (and TensorBoard run) of `arch` trained with `loss`: WORKDIR/train/NAME,
    the architecture's '/' and ':' made path-safe."""
    return f"{str(arch).replace('/', '_').replace(':', '-')}_{loss}"


def row_and_seed(name):
    """final_name's inverse: 'kdas_od_seed2' -> ('kdas_od', 2), 'kdas_od' -> ('kdas_od', 0)."""
    row, seed = re.fullmatch(r"(.+?)(?:_seed(\d+))?", name).groups()
    return row, int(seed or 0)


def combine_seeds(seeds):
    """One row from its trainings ([finals results], seed order): each metric's mean, top-1's std, every seed kept.

    The std is the population's (ddof=0), as the paper's "mean ± std" over its runs; one seed has std 0.
    """
    row = {key: seeds[0][key] for key in ("architecture", "loss", "epochs", "parameters")}
    row["trained_on_validation"] = any(seed.get("trained_on_validation", False) for seed in seeds)
    for split in ("val", "test"):
        row[split] = {key: float(np.mean([s[split][key] for s in seeds])) for key in seeds[0][split]}
        row[split]["top1_std"] = float(np.std([s[split]["top1"] for s in seeds]))
    row["seeds"] = seeds
    return row


def served_row(rows):
    """The final row the run serves: of the KDAS rows (kdas_*), the best mean validation top-1; ties go to
    fewer parameters, then to the loss earlier in LOSS_ORDER. Rows trained on the validation split too
    (--final_training=all) are served by LOSS_ORDER alone: their validation numbers measure fit, not accuracy.

    Validation, never test: the test split judges the served model, it does not choose it.
    rows: {row name: results with ["val"]["top1"] and ["parameters"]}. Returns None when no KDAS row is finished.
    """
    kdas = _kdas_rows(rows)
    if not kdas:
        return None
    if _validation_trained(kdas):
        return min(kdas, key=lambda name: LOSS_ORDER.index(row_kind_and_loss(name)[1]))
    return min(kdas, key=lambda name: (-kdas[name]["val"]["top1"], kdas[name]["parameters"],
                                       LOSS_ORDER.index(row_kind_and_loss(name)[1])))


def _validation_trained(rows):
    return any(row.get("trained_on_validation", False) for row in rows.values())


def _kdas_rows(rows):
    return {name: row for name, row in rows.items() if row_kind_and_loss(name)[0] == "kdas"}


def serving_decision(rows):
    """Why served_row chose its row, for results.json: the row, the rows it tied with, and what decided."""
    served = served_row(rows)
    if served is None:
        return None
    kdas = _kdas_rows(rows)
    if _validation_trained(kdas):
        return {"row": served, "tied_on_validation": [], "decided_by": "loss order " + " > ".join(LOSS_ORDER),
                "rule": "the final rows trained on the validation split too (--final_training=all): the KDAS row "
                        "of the loss first in " + " > ".join(LOSS_ORDER) + ", its first seed"}
    tied = sorted(name for name, row in kdas.items() if row["val"]["top1"] == kdas[served]["val"]["top1"])
    smallest = [name for name in tied if kdas[name]["parameters"] == kdas[served]["parameters"]]
    decided_by = ("validation top-1" if len(tied) == 1 else "fewer parameters" if len(smallest) == 1
                  else "loss order " + " > ".join(LOSS_ORDER))
    return {"row": served, "tied_on_validation": tied, "decided_by": decided_by,
            "rule": "best mean validation top-1 of the KDAS rows; ties: fewer parameters, then loss order "
                    + " > ".join(LOSS_ORDER)}


def served_seed(seeds):
    """Of one row's trainings ([results] in seed order), the index of the best by validation; ties: the first.
    Trainings that saw the validation split (--final_training=all): the first."""
    if any(seed.get("trained_on_validation", False) for seed in seeds):
        return 0
    return max(range(len(seeds)), key=lambda index: (seeds[index]["val"]["top1"], -index))
