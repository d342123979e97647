"""kdas_tf.load_search(workdir): a finished search as a KerasTuner tuner, to query as KerasTuner users do.

    tuner = kdas_tf.load_search("runs/digits")
    tuner.results_summary()
    best_hp = tuner.get_best_hyperparameters(1)[0]       # .values["architecture"], ["parameters"], ...
    best_model = tuner.get_best_models(1)[0]             # the trained candidate, from its trial's checkpoint

Everything comes from the work directory: the search's settings from settings.json, its trials and the
controller's state from search/ (oracle.json, trial_N/trial.json), the models from the trials' last
checkpoints (search/trial_N/checkpoints, rebuilt from the trial's architecture and restored). The ranking is
KDASOracle.best_trial's: the highest reward first (the validation top-1; with --cost_exponent, MnasNet's soft
objective), ties to the smaller network (KerasTuner's own ranking leaves ties in file order). A search run with
--parallel_trials has no tuner0.json; its oracle is read from oracle.json all the same. Nothing is written: the
tuner refuses to search and its oracle to save.
"""

import os

import keras_tuner
from keras_tuner.engine import trial as trial_module

from kdas_tf import assembly, config
from kdas_tf.deploy import serving
from kdas_tf.runtime import storage
from kdas_tf.errors import UserError
from kdas_tf.nas.oracle import KDASOracle
from kdas_tf.runtime.workdir import SEARCH_PROJECT, Workdir

READ_ONLY = "a recorded search is read-only: rerun its python -m kdas_tf.search command to continue it"


class RecordedOracle(KDASOracle):
    """A KDASOracle read back from disk: KerasTuner's best trials ranked by best_trial's rule, and no writes."""

    def get_best_trials(self, num_trials=1):
        """The `num_trials` best completed trials; the first is best_trial()'s (ties: fewer parameters)."""
        done = [t for t in self.trials.values()
                if t.status == trial_module.TrialStatus.COMPLETED and t.score is not None]
        return sorted(done, key=self.rank, reverse=True)[:num_trials]

    def save(self):
        raise UserError(READ_ONLY)


class RecordedSearch(keras_tuner.Tuner):
    """The tuner of a search in `workdir`: results_summary, get_best_hyperparameters, get_best_models."""

    def __init__(self, oracle, *, workdir, search_config):
        self.workdir = workdir
        self.search_config = search_config
        super().__init__(oracle, directory=workdir.root, project_name=SEARCH_PROJECT)
        if not self.oracle.trials:  # KerasTuner reloads only from tuner0.json, which a parallel search lacks
            self.oracle.reload()
        # settings.json leaves out --rounds and --trials_per_round (a rerun may extend them): a recorded search
        # counts the trials it holds.
        self.oracle.max_trials = len(self.oracle.trials)

    def run_trial(self, trial, *args, **kwargs):
        raise UserError(READ_ONLY)

    def search(self, *args, **kwargs):
        raise UserError(READ_ONLY)

    def save(self):
        raise UserError(READ_ONLY)

    def load_model(self, trial):
        """The trial's candidate as trained: its architecture, restored from its last checkpoint."""
        model, _ = serving.load_model_for_export(self.workdir.trial(trial.trial_id), self.workdir.root,
                                                 self.oracle.num_classes, self.oracle.input_shape,
                                                 trial.hyperparameters.values["architecture"])
        return model


def recorded_config(root):
    """The Config a search in work directory `root` was run with, from its settings.json.

    Settings recorded later than the directory was made take the values such directories were made with.
    """
    path = Workdir(root).settings
    if not os.path.exists(path):
        raise UserError(f"{root!r} has no settings.json: give the --workdir of a python -m kdas_tf.search run")
    unrecorded = config.Config(run=config.RunConfig(workdir=root)).unrecorded_settings()
    del unrecorded["search_seed"]  # absent: the directory's own --seed, which its settings.json holds
    settings = {**unrecorded, **storage.read_json(path)}
    arguments = [config.flag_argument(flag, value) for flag, value in settings.items()
                 if value is not None and flag != storage.DATA_SETTING]  # the data's record is no flag
    return config.from_args([f"--workdir={root}", *arguments], sections=config.SEARCH_SECTIONS)


def load_search(workdir):
    """The search in `workdir` as a KerasTuner tuner (RecordedSearch); reads the directory, writes nothing."""
    if not workdir or not os.path.isfile(os.path.join(workdir, SEARCH_PROJECT, "oracle.json")):
        raise UserError(f"{workdir!r} holds no search (no {SEARCH_PROJECT}/oracle.json): give the --workdir of a "
                        "python -m kdas_tf.search run")
    search_config = recorded_config(workdir)
    num_classes, image_shape = assembly.data_metadata(search_config)
    cost = assembly.cost_model(search_config, num_classes, image_shape, missing="refuse")  # its kept latency table
    budget, _ = assembly.budget(search_config, num_classes, image_shape, cost=cost)
    oracle = assembly.make_oracle(search_config, num_classes, image_shape, budget, oracle_class=RecordedOracle,
                                  cost=cost)
    return RecordedSearch(oracle, workdir=Workdir(workdir), search_config=search_config)
