"""The config tree: Config, a whole run's sections checked against each other, and the sections by name
(SECTIONS), which the command line defines and reads flags by. Config.settings() is a work directory's
settings.json (with the data's identity and the given teachers' hashes added by kdas_tf.assembly.run_settings)."""

import dataclasses

from kdas_tf.config.options import flag_name
from kdas_tf.config.search_section import SearchConfig
from kdas_tf.config.sections import (ControllerSettings, DataConfig, ExportConfig, ModelConfig, ParallelConfig,
                                     RecipeConfig, RunConfig, TeacherConfig, TrainJob)
from kdas_tf.errors import UserError
from kdas_tf.models import networks


# The sections of a search (python -m kdas_tf.search and its parallel workers).
SEARCH_SECTIONS = ("run", "data", "recipe", "model", "teachers", "search", "controller", "parallel", "export")
SECTIONS = {"run": RunConfig, "data": DataConfig, "recipe": RecipeConfig, "model": ModelConfig,
            "teachers": TeacherConfig, "search": SearchConfig, "controller": ControllerSettings,
            "parallel": ParallelConfig, "export": ExportConfig, "train": TrainJob}


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run: every section, checked against the others."""

    run: RunConfig
    data: DataConfig = DataConfig()
    recipe: RecipeConfig = RecipeConfig()
    model: ModelConfig = ModelConfig()
    teachers: TeacherConfig = TeacherConfig()
    search: SearchConfig = SearchConfig()
    controller: ControllerSettings = ControllerSettings()
    parallel: ParallelConfig = ParallelConfig()
    export: ExportConfig = ExportConfig()
    train: TrainJob = TrainJob()

    def __post_init__(self):
        self.recipe.train_config(network=self.teachers.network, epochs=self.teacher_epochs)

    @property
    def workdir(self):
        return self.run.workdir

    @property
    def teacher_workdir(self):
        """Where the teacher ensemble lives: --teacher_workdir, else the run's own --workdir."""
        return self.teachers.workdir or self.run.workdir

    @property
    def teacher_epochs(self):
        return self.teachers.epochs or self.recipe.epochs

    def teacher_train_config(self):
        return self.recipe.train_config(network=self.teachers.network, epochs=self.teacher_epochs)

    def train_config(self, loss, *, epochs=None):
        """The recipe for the search's candidates and final rows (weight decay of the student's family)."""
        return self.recipe.train_config(network=self.search.backbone, loss=loss, epochs=epochs)

    def controller_config(self):
        num_decisions = networks.num_stages(self.search.backbone) * self.search.ops_per_addon
        return self.controller.controller_config(num_decisions=num_decisions, seed=self.search_seed)

    @property
    def search_seed(self):
        """The seed of the search's controller and oracle: --search_seed, else --seed."""
        return self.recipe.seed if self.search.search_seed is None else self.search.search_seed

    def refuse_multi_worker(self, entry):
        """A search or an ensemble is many trainings: across hosts they are spread as trials, not split per step."""
        if self.run.strategy == "multi_worker":
            raise UserError(f"--strategy=multi_worker splits one training over hosts; python -m kdas_tf.{entry} "
                            "runs many: spread a search over hosts with worker hosts (README, Parallel trials), "
                            "and use multi_worker with python -m kdas_tf.train")

    def settings(self):
        """What makes a work directory's results what they are, keyed by flag: a rerun must agree."""
        settings = {flag_name(f): _plain(getattr(section, f.name))
                    for name, section in self._sections() if name != "train"
                    for f in dataclasses.fields(section) if f.metadata["setting"]}
        settings["search_seed"] = self.search_seed
        return settings

    def unrecorded_settings(self):
        """{flag: value} of the settings added later, as work directories made before them were made."""
        unrecorded = {flag_name(f): f.metadata["unrecorded"] for name, section in self._sections() if name != "train"
                      for f in dataclasses.fields(section) if f.metadata["unrecorded"] is not None}
        return {**unrecorded, "search_seed": self.recipe.seed}  # before it, the controller took --seed

    def _sections(self):
        return [(name, getattr(self, name)) for name in SECTIONS]


def _plain(value):
    """A setting as JSON records it; lists as their flag's strings, as settings.json always held them."""
    return [str(v) for v in value] if isinstance(value, tuple) else value
