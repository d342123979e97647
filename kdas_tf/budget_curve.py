"""The paper's Figure 3: the networks KDAS finds at several memory budgets, beside man-made networks of
similar size, all distilled from one teacher ensemble with the same L_T.

    WORKDIR/
      teachers/            the ensemble every search and every man-made row shares
      budgets/M0.9/        one whole pipeline run per budget (search, found model's final rows, export)
      final/resnet44_od/   the man-made rows (their seeds as final/ROW_seedK)
      sweep.json, sweep.md, sweep.png

Each budget's run is pipeline.run on its own work directory, so the sweep resumes like everything else:
rerun the same command and finished searches and trainings are read back. The plain backbone is the
first man-made row; the others are the deeper networks of the backbone's family whose sizes are
nearest each budget.
"""

import dataclasses

from absl import logging

from kdas_tf import assembly, models, pipeline
from kdas_tf.errors import UserError
from kdas_tf.reporting import figures, results
from kdas_tf.runtime import distribute, rows, storage
from kdas_tf.runtime.workdir import Workdir


def parse_budgets(text):
    """--budgets=0.6,0.9,1.2 (millions, or multiples like 2x): the budgets in the order given, each once."""
    budgets = [b.strip() for b in text if b.strip()] if not isinstance(text, str) else [
        b.strip() for b in text.split(",") if b.strip()]
    if len(budgets) < 2:
        raise UserError(f"--budgets={','.join(budgets)}: give at least two budgets, e.g. --budgets=0.6,0.9,1.2")
    return list(dict.fromkeys(budgets))


def similar_networks(backbone, sizes, num_classes, image_shape, shortcut="zero_pad"):
    """The backbone, then for each size the network of its family nearest it in parameters (deeper ResNets,
    or deeper WideResNets of the same width), each once."""
    chosen = [backbone]
    for size in sizes:
        try:
            nearest = models.nearest_network(backbone, size, num_classes, image_shape, shortcut=shortcut)
        except ValueError:
            raise UserError(f"--backbone={backbone}: the sweep compares with deeper networks of its family, which "
                            "exist for ResNets and WideResNets") from None
        if nearest not in chosen:
            chosen.append(nearest)
    return chosen


def run(config, budgets, *, dataset=None):
    """Every budget's search and final rows, the man-made rows, and the Figure 3 table and plot; returns the points."""
    config.refuse_multi_worker("sweep")
    root = Workdir(config.workdir, config.teacher_workdir)
    searches = {budget: dataclasses.replace(  # every budget judged before anything is trained
        config, run=dataclasses.replace(config.run, workdir=root.path("budgets", f"M{budget}")),
        teachers=dataclasses.replace(config.teachers, workdir=root.teacher_root),
        search=dataclasses.replace(config.search, budget=budget, student_loss=()),
    ) for budget in budgets}
    info = (dataset.info.num_classes, dataset.info.image_shape) if dataset else assembly.data_metadata(config)
    for search in searches.values():
        assembly.budget(search, *info)
    dataset = dataset or assembly.load_data(config)
    runs = {}
    for budget, search in searches.items():
        logging.info("sweep: budget %s (%d of %d)", budget, len(runs) + 1, len(budgets))
        runs[budget] = pipeline.run(search, dataset=dataset)
    points = [_point("KDAS", summary["found_architecture"], loss, row, budget)
              for budget, summary in runs.items() for (kind, loss), row in _rows(summary) if kind == "kdas"]
    sizes = [summary["budget"] for summary in runs.values()]
    with assembly.building(config):
        root.claim({})
        strategy = distribute.make_strategy(config.run.strategy, tpu=config.run.tpu)
        teacher = assembly.load_teachers(config, dataset, root, strategy)
        for network in similar_networks(config.search.backbone, sizes, dataset.info.num_classes,
                                        dataset.info.image_shape, config.model.shortcut):
            for loss in config.search.final_loss:
                row = pipeline.train_seeds(config, models.Architecture.backbone_only(network), loss, dataset, strategy,
                                           teacher, root, rows.sweep_row(network, loss), network=network)
                points.append(_point("man-made", network, loss, row))
    write(root, points)
    return points


def _rows(summary):
    return [(rows.row_kind_and_loss(name), row) for name, row in summary["final"].items()]


def _point(kind, architecture, loss, row, budget=None):
    return {"kind": kind, "architecture": architecture, "loss": loss, "budget": budget,
            "parameters": row["parameters"], "test_top1": row["test"]["top1"],
            "test_top1_std": row["test"].get("top1_std", 0.0), "val_top1": row["val"]["top1"],
            "seeds": len(row.get("seeds", [row]))}


COLUMNS = ("model", "budget M", "L_T", "parameters", "test top-1 %", "val top-1 %")


def table(points):
    """Figure 3 as rows: each found model and man-made network, by size."""
    lines = []
    for p in sorted(points, key=lambda p: (p["loss"], p["parameters"])):
        test = 100 * p["test_top1"] if p["seeds"] == 1 else \
            f"{100 * p['test_top1']:.2f} ± {100 * p['test_top1_std']:.2f}"
        lines.append((f"{p['kind']} {p['architecture']}", p["budget"] or "-", p["loss"].upper(),
                     f"{p['parameters'] / 1e6:.3f}M", test, 100 * p["val_top1"]))
    return results.markdown_table(COLUMNS, lines)


def write(root, points):
    storage.write_json(root.path("sweep.json"), {"points": points})
    storage.write_text(root.path("sweep.md"), table(points))
    storage.write_bytes(root.path("sweep.png"), figures.budget_sweep(points))
    logging.info("sweep: %s\n%s", root.path("sweep.png"), table(points))
