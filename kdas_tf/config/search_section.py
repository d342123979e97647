"""The search section: the student backbone, its budget and how the budget is written, the rounds and trials,
the losses and the final rows. --budget's grammar (BUDGET_METRICS, BUDGET_UNITS, BUDGET_FORMS; LATENCY_FORMATS)
lives here, with SearchConfig.budget_form reading it; the budget is resolved later, when a job knows its data
(kdas_tf.nas.budget.resolve_budget)."""

import dataclasses
import re
import typing

from kdas_tf.config.options import at_least_one, option
from kdas_tf.distill.recipe import DISTILLING, LOSSES, check_loss_name
from kdas_tf.errors import UserError, as_user_error
from kdas_tf.models import networks
from kdas_tf.models.architecture import Architecture
from kdas_tf.nas.controller_config import check_cost_exponent

# --budget_metric (kdas_tf.models.costs.METRICS) and what --budget may say in each: {suffix: scale to the unit
# the search counts in}, '' for a bare number, 'x' for a multiple of the backbone. Latency counts nanoseconds.
BUDGET_METRICS = ("parameters", "macs", "latency")
BUDGET_UNITS = {"parameters": {"": 1e6, "m": 1e6}, "macs": {"": 1e6, "k": 1e3, "m": 1e6, "g": 1e9},
                "latency": {"": 1e6, "ms": 1e6, "us": 1e3}}
BUDGET_FORMS = {"parameters": "millions of parameters (0.9) or a multiple (2x)",
                "macs": "MACs with a unit (40M, 1.2G, 500k; a bare number is millions) or a multiple of the "
                        "backbone's (2x)",
                "latency": "a latency with a unit (1.5ms, 300us; a bare number is milliseconds) or a multiple of "
                           "the backbone's (2x)"}
LATENCY_FORMATS = ("tflite", "tflite_int8")  # LiteRT formats of kdas_tf.deploy.litert.FORMATS


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The architecture search and the final rows trained from what it finds."""

    backbone: str = option("resnet32", "Student backbone the search adds operations to.")
    budget: str = option("2x", "Budget M in --budget_metric's unit: millions of parameters (0.9 or 0.9M), MACs in "
                         "millions or billions (40M, 1.2G), latency in milliseconds or microseconds (1.5ms, 300us), "
                         "or a multiple of the backbone's (2x).")
    # Directories made before it counted parameters.
    budget_metric: str = option(
        "parameters", "What --budget bounds: parameters (the paper's memory budget), macs (multiply-accumulates of "
        "one image) or latency (one image through the deployed LiteRT model, predicted from a table of the backbone "
        "and each op measured on this machine once, or given with --latency_table).", choices=BUDGET_METRICS,
        unrecorded="parameters")
    # Directories made before it rewarded the validation top-1 alone.
    cost_exponent: float = option(
        0.0, "Exponent w of MnasNet's soft objective: the controller is rewarded, and each round's and the search's "
        "best network chosen, by val top-1 x (cost / budget)^w, the cost in --budget_metric's unit. 0: the "
        "paper's reward, val top-1 alone; MnasNet's -0.07 prefers the cheaper of two networks unless the dearer "
        "one is clearly more accurate (README, Budgets). From -1 to 0; the --budget mask still binds.",
        unrecorded=0.0)
    # The latency table kept in the work directory records them too, and refuses a run of others.
    latency_format: str = option("tflite_int8", "--budget_metric=latency: the LiteRT format the table is measured "
                                 "in, as --formats exports it: tflite (float32) or tflite_int8.",
                                 choices=LATENCY_FORMATS)
    latency_threads: int = option(1, "--budget_metric=latency: the LiteRT interpreter's threads in the table's "
                                  "measurements.")
    # Where a table was given from does not change it: the work directory keeps the table it searched with.
    latency_table: typing.Optional[str] = option(
        None, "--budget_metric=latency: a table measured on the target device (python -m kdas_tf.latency "
        "--export_table=FILE there) instead of measuring one on this machine.", setting=False)
    # A finished search may be extended by more rounds or trials, and more final rows added to it.
    rounds: int = option(1, "Search rounds; each starts from the previous round's best.", setting=False)
    trials_per_round: int = option(20, "Candidates trained per round.", setting=False)
    ops_per_addon: int = option(2, "Operations per add-on module (L).")
    search_loss: str = option("od", "Loss L_S that trains candidates: ce, kd or od.")
    search_epochs: int = option(10, "Epochs of each candidate's training.")
    final_loss: typing.Tuple[str, ...] = option(("ce", "kd", "od"), "Losses L_T of the final trainings (found model).",
                                                setting=False)
    student_loss: typing.Tuple[str, ...] = option(
        ("ce", "kd", "od"), "Losses for the plain backbone student rows (empty: skip).", setting=False)
    manmade: typing.Tuple[str, ...] = option(
        (), "Man-made networks trained beside the found model with each --final_loss (Table 2's rows of similar "
        "size): names (resnet56), or 'auto' for the network of the backbone's family nearest the found "
        "model's size, deeper than the backbone.", setting=False)
    # More seeds may be added to a finished run: the first ones are read back.
    seeds: int = option(1, "Trainings of every final and plain-student row, from seeds --seed, --seed+1, ...: "
                        "the tables show their mean and standard deviation.", setting=False)
    # Recorded resolved (Config.settings), so that a directory made before it (whose controller took --seed)
    # resumes only with the seed it was searched with.
    search_seed: typing.Optional[int] = option(
        None, "Seed of the search's controller and oracle (default: --seed). Independent searches that share "
        "one teacher ensemble (--teacher_workdir, whose members were trained from --seed) differ by it.",
        setting=False)
    # Only printed: what the run is compared with, not how it runs.
    paper_found: typing.Optional[float] = option(
        None, "Millions of parameters of the network the paper found with this setting, printed by --dry_run "
        "beside the size the search is likely to find (the paper flagfiles set it).", setting=False)

    def __post_init__(self):
        as_user_error(Architecture.backbone_only, self.backbone)
        if self.budget_metric not in BUDGET_METRICS:
            raise UserError(f"--budget_metric={self.budget_metric!r}: expected one of {', '.join(BUDGET_METRICS)}")
        self.budget_form()
        self._check_latency_flags()
        as_user_error(check_cost_exponent, self.cost_exponent)
        at_least_one(self, "rounds", "trials_per_round", "ops_per_addon", "search_epochs", "seeds")
        as_user_error(check_loss_name, self.search_loss, "--search_loss")
        if not self.final_loss:
            raise UserError(f"--final_loss is empty: give at least one of {', '.join(LOSSES)}")
        for flag in ("final_loss", "student_loss"):
            for loss in getattr(self, flag):
                as_user_error(check_loss_name, loss, f"--{flag}")
        for network in self.manmade:
            if network != "auto":
                as_user_error(networks.parse_network, network)
        if "auto" in self.manmade and not networks.same_family(self.backbone):
            raise UserError(f"--manmade=auto: {self.backbone} has no deeper networks of its family to compare "
                            "with (ResNets and WideResNets have); name the networks instead")

    def distilling_losses(self):
        """The run's losses that read teacher targets (search and final rows), each once."""
        return tuple(loss for loss in DISTILLING
                     if loss in (self.search_loss, *self.final_loss, *self.student_loss))

    def num_trials(self):
        """The whole search's trials, every round's."""
        return self.rounds * self.trials_per_round

    def budget_form(self):
        """--budget as written: ('multiple', 2.0) for '2x'; ('millions', 0.9) for parameters' '0.9' or '0.9M';
        ('absolute', n) for MACs (40M, 1.2G: n MACs) and latency (1.5ms, 300us: n nanoseconds). Resolved once a job
        knows the data's classes and image shape (kdas_tf.nas.budget.resolve_budget)."""
        text = str(self.budget).strip().lower()
        match = re.fullmatch(r"((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([a-z]*)", text)
        units = BUDGET_UNITS[self.budget_metric]
        if match is None or (match[2] not in units and match[2] != "x") or not 0 < float(match[1]) < float("inf"):
            raise UserError(f"--budget={text!r} is not a budget: give {BUDGET_FORMS[self.budget_metric]}")
        value = float(match[1])
        if match[2] == "x":
            return "multiple", value
        if self.budget_metric == "parameters":
            return "millions", value
        return "absolute", value * units[match[2]]

    def _check_latency_flags(self):
        if self.latency_threads < 1:
            raise UserError(f"--latency_threads={self.latency_threads}: give the interpreter's threads, 1 or more")
        if self.latency_format not in LATENCY_FORMATS:
            raise UserError(f"--latency_format={self.latency_format!r}: expected one of {', '.join(LATENCY_FORMATS)}")
        if self.latency_table and self.budget_metric != "latency":
            raise UserError(f"--latency_table is a latency budget's table: it needs --budget_metric=latency, not "
                            f"{self.budget_metric}")
