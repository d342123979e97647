"""A run described before it runs (--dry_run): every step with its size, and how long it would take here.

describe_plan(config) reads the config and the data's metadata, resolves the budget and its cost table (a
latency table is measured when none is given, and kept nowhere), and prints what pipeline.run(config) would
do: data, teachers, rounds and trials, the sizes the search can reach, the controller's policy as it starts,
the final rows and the exports. estimate_lines(config) times a few training steps (benchmarking.estimate).
Nothing here trains, writes or claims a work directory.
"""

from kdas_tf import assembly, models
from kdas_tf.benchmarking import estimate


def describe_plan(config):
    """What run(config) would do, for --dry_run: every step with its size."""
    search, teachers = config.search, config.teachers
    num_classes, image_shape = assembly.data_metadata(config)
    cost = assembly.cost_model(config, num_classes, image_shape, missing="measure")  # a latency table: kept nowhere
    budget, backbone_cost = assembly.budget(config, num_classes, image_shape, cost=cost)
    price = cost.format  # in the budget's metric: 0.150M (parameters), 12.35M MACs, 0.280 ms
    given = assembly.teacher_model_files(config)
    reach = models.reachable_sizes(search.backbone, rounds=search.rounds, ops_per_addon=search.ops_per_addon,
                                   num_classes=num_classes, input_shape=image_shape, shortcut=config.model.shortcut,
                                   cost=None if search.budget_metric == "parameters" else cost)
    return "\n".join([
        f"dry run of {config.workdir} on {config.data.dataset} (strategy {config.run.strategy}):",
        *assembly.describe_data(config, num_classes),
        f"  teachers: {len(given)} given models ({', '.join(given)}), fed "
        f"{teachers.input_scale} images" if teachers.models else
        f"  teachers: {teachers.num_teachers} x {teachers.network}, {config.teacher_epochs} epochs each, "
        f"in {config.teacher_workdir}/teachers (finished members are reused)",
        f"  search: {search.rounds} round(s) x {search.trials_per_round} trials of {search.backbone} "
        f"({price(backbone_cost)}, {config.model.shortcut} shortcuts) + {search.ops_per_addon} ops per "
        f"stage, budget {price(budget)}, trained with {search.search_loss} for {search.search_epochs} epochs each",
        *([f"  latency table: {cost.note}"] if cost.note else []),
        *_objective_lines(search.cost_exponent, price(budget)),
        *models.describe_reach(reach, budget, search.budget_metric),
        "  the controller's policy as the search starts, a median of 25 samples per round grown on the last "
        f"(budget {price(budget)}" + (f"; the paper found {search.paper_found:.2f}M" if search.paper_found else "")
        + "):",
        *[f"    after round {r + 1}: {price(cost.of(arch))} ({arch})"
          for r, arch in assembly.policy_medians(config, num_classes, image_shape, budget, cost=cost)],
        f"  final: the found model with {', '.join(search.final_loss)}; {search.backbone} with "
        f"{', '.join(search.student_loss) or 'nothing'}; {config.recipe.epochs} epochs each, "
        f"{search.seeds} seed(s) per row"
        + (f"; man-made {', '.join(search.manmade)} with {', '.join(search.final_loss)}" if search.manmade else ""),
        _final_training_line(config.data.final_training),
        f"  then: test evaluation, {' + '.join(config.export.formats)} in {config.workdir}/export, results.json "
        "and results.md",
    ])


def _objective_lines(exponent, budget):
    """The dry run's line on --cost_exponent's reward (none for the paper's, the validation top-1 alone)."""
    if not exponent:
        return []
    return [f"  reward: val top-1 x (cost / {budget})^{exponent:g} (--cost_exponent, MnasNet's soft objective; the "
            f"budget's mask still binds): a network at half the budget scores {0.5 ** exponent:.3f} x its top-1, "
            "and the found network is the best by it"]


def _final_training_line(final_training):
    if final_training == "all":
        return ("  teachers and final rows train on the whole training split, validation included "
                "(--final_training=all); the served row is the KDAS row of the loss first in od > kd > ce")
    return ("  teachers and final rows train on the training split without the validation holdout; the served "
            "row is the KDAS row best on validation")


def estimate_lines(config):
    """The dry run's estimate of the run's duration here: a few training steps timed (benchmarking.estimate)."""
    return estimate.describe(config, *assembly.data_metadata(config))
