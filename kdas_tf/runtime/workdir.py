"""The layout of a work directory, in one place: every path, who holds it, and what it has finished.

    WORKDIR/
      settings.json            what the results depend on (config.Config.settings) and the data's content
                               (data.content_identity); a rerun must agree
      teachers/member_i/       each member's checkpoints and model.keras; teachers/results.json (the ensemble's
                               report, each member's content hash), settings.json (under --teacher_workdir when
                               runs share one ensemble)
      teacher_outputs/{kd,od}/ the cached distillation targets, one folder per (seed, epoch) and loss
      search/                  the KerasTuner project: oracle.json, trial_N/ (checkpoints, trial.json, result.json)
      final/ROW/               each final row (student_ce, kdas_od, ...): checkpoints, model.keras, results.json;
                               final/ROW_seedK/ its training from --seed + K (--seeds)
      train/NAME/              what python -m kdas_tf.train trains
      tb/                      one TensorBoard tree: teachers/, trials/, controller/, search/, final/, train/
      export/                  the served SavedModel (and --formats' LiteRT files, deployment.json and .md;
                               latency.json: a latency budget's found network measured); exports/NAME/ other exports
      results.json, results.md the run's numbers and its Table 2
      latency_table.json       --budget_metric=latency: the table the search priced its networks with
      report/                  python -m kdas_tf.report's tables and figures
      .lock, .lock-workers     who holds the directory (kdas_tf.runtime.lock)
"""

import glob
import os
import re
import shutil
import tempfile

from absl import logging

from kdas_tf.runtime import lock, rows, schema, storage
from kdas_tf.errors import UserError

SEARCH_PROJECT = "search"  # KerasTuner's project name: WORKDIR/search
# Beside an export's formats: its deployment table (kdas_tf.deploy.litert), as JSON and as Markdown.
DEPLOYMENT_JSON, DEPLOYMENT_MD = "deployment.json", "deployment.md"


class Workdir:
    """Every path of one work directory; `teacher_root` holds the ensemble (default: the same directory)."""

    def __init__(self, root, teacher_root=None):
        self.root = root
        self.teacher_root = teacher_root or root

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    @property
    def settings(self):
        return self.path("settings.json")

    @property
    def results(self):
        return self.path("results.json")

    @property
    def results_table(self):
        return self.path("results.md")

    @property
    def export(self):
        return self.path("export")

    @property
    def found_latency(self):
        """--budget_metric=latency: the found network predicted and measured (deploy.latency_check.found_latency),
        beside the export it measured, so that it goes when the export is replaced."""
        return os.path.join(self.export, "latency.json")

    def other_export(self, name):
        return self.path("exports", name)

    def deployment_tables(self):
        """[(export name, its deployment.json)] of export/ and each exports/NAME/ that has one."""
        others = self.path("exports")
        names = [("export", self.export)] + [(name, os.path.join(others, name))
                                             for name in sorted(os.listdir(others) if os.path.isdir(others) else ())]
        return [(name, os.path.join(path, DEPLOYMENT_JSON)) for name, path in names
                if os.path.exists(os.path.join(path, DEPLOYMENT_JSON))]

    @property
    def report(self):
        return self.path("report")

    @property
    def latency_table(self):
        """The latency table a --budget_metric=latency search prices its networks with (deploy.latency_table)."""
        return self.path("latency_table.json")

    def tb(self, *parts):
        return self.path("tb", *parts)

    # --- teachers (in teacher_root) ---

    @property
    def teachers(self):
        return os.path.join(self.teacher_root, "teachers")

    def member(self, index):
        return os.path.join(self.teachers, f"member_{index}")

    def member_model(self, index):
        return os.path.join(self.member(index), "model.keras")

    def member_models(self, num_teachers):
        return [self.member_model(i) for i in range(num_teachers)]

    def member_tb(self, index):
        return os.path.join(self.teacher_root, "tb", "teachers", f"member_{index}")

    @property
    def teachers_results(self):
        return os.path.join(self.teachers, "results.json")

    @property
    def teacher_outputs(self):
        return self.path("teacher_outputs")

    # --- search, final rows, single trainings ---

    @property
    def search(self):
        return self.path(SEARCH_PROJECT)

    @property
    def search_state(self):
        """KerasTuner's oracle file: it exists once a search has begun."""
        return self.path(SEARCH_PROJECT, "oracle.json")

    def trial(self, trial_id):
        return self.path(SEARCH_PROJECT, f"trial_{trial_id}")

    def trial_results(self):
        return trial_results(self.search)

    def final(self, row, seed_index=0):
        """A final row's training from seed --seed + seed_index (the first keeps the row's own name)."""
        return self.path("final", rows.final_name(row, seed_index))

    def final_model(self, row, seed_index=0):
        return os.path.join(self.final(row, seed_index), "model.keras")

    def final_results(self, row, seed_index=0):
        return os.path.join(self.final(row, seed_index), "results.json")

    def train(self, name):
        return self.path("train", name)

    def check_writable(self):
        """Refuse a work directory that cannot be made or written, cheaply and before any data is read."""
        check_writable(self.root, "workdir")
        if self.teacher_root != self.root:
            check_writable(self.teacher_root, "teacher_workdir")

    def claim(self, settings, unrecorded=None, *, owner=True, check_teachers=None, check_state=None):
        """Make the directory, hold it for this process, check what it holds, remove dead processes' temporaries,
        record `settings`.

        A directory made with other settings, or from other data, or held by another process, is refused; so is
        one holding a search's results without its settings.json. unrecorded: values of settings added later,
        as directories made before them hold them. check_teachers() and check_state(): read the state files the
        job uses and resumes from, and refuse one that is not valid, writing nothing. check_teachers runs once
        the teachers' directory is held: teachers in another directory (--teacher_workdir) are judged before
        this one is even made. check_state runs under this directory's lock, once the settings agree, before
        anything else in it is written: a refused job leaves it as it was, its lock file's record of its holder
        aside. owner=False: a parallel search's worker, under its chief's claim; it writes nothing here (the
        settings are checked, not recorded) and removes nothing, since its chief and the other workers are
        writing.
        """
        self.check_writable()
        elsewhere = os.path.abspath(self.teacher_root) != os.path.abspath(self.root)
        if elsewhere:
            os.makedirs(self.teacher_root, exist_ok=True)
            lock.hold_teachers(self.teacher_root, train=False)
            if check_teachers:
                check_teachers()
        os.makedirs(self.root, exist_ok=True)
        if owner:
            lock.hold(self.root)
        else:
            lock.hold_as_worker(self.root)
        written = storage.check_settings(self.root, settings, unrecorded,
                                         results=self.search_results() if settings else ())
        if check_teachers and not elsewhere:
            check_teachers()
        if check_state:
            check_state()
        if not owner:
            return
        if lock.workers_alive(self.root):
            logging.info("%s: workers of a parallel search are running: their temporaries are kept", self.root)
        else:
            remove_leftovers(self.root)
        storage.record_settings(self.root, settings, written)

    def search_results(self):
        """What only a search run makes here: its state and trials, final rows, results. A teachers or train job's
        files keep records of their own (teachers/settings.json, each training's results.json)."""
        return [self.search_state, self.path("final"), self.results, *sorted(glob.glob(self.trial("*")))]

    def claim_teachers(self):
        """Before training teachers: hold their directory alone (the run's own, or --teacher_workdir)."""
        lock.hold_teachers(self.teacher_root, train=True)


def check_writable(root, flag):
    """Refuse `root` unless it is (or can be made) a writable directory; creates nothing, leaves nothing."""
    path = os.path.abspath(root)
    existing = path
    while not os.path.exists(existing):  # a name too long does not exist either
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"--{flag}={root}: {existing} is a file, not a directory: move it or choose another --{flag}")
    name_max = os.pathconf(existing, "PC_NAME_MAX")
    made = os.path.relpath(path, existing).split(os.sep) if path != existing else []
    if any(len(os.fsencode(name)) > name_max for name in made) or len(os.fsencode(path)) >= os.pathconf(
            existing, "PC_PATH_MAX"):
        raise UserError(f"--{flag}={root}: a name in it is longer than this file system allows ({name_max} bytes): "
                        f"choose a shorter --{flag}")
    try:
        tempfile.TemporaryFile(dir=existing).close()  # unnamed on Linux: the probe leaves no file, even if killed
    except OSError as error:
        raise UserError(f"--{flag}={root}: {existing} is not writable ({error.strerror}): make it writable or "
                        f"choose another --{flag}") from None


# Temporaries of an interrupted write: storage's files, teacher_outputs' folders (.tmp-*), serving's staged
# exports (.export-*, .replaced-*) and TensorFlow's half-written checkpoints (ckpt-N_temp/).
LEFTOVER = re.compile(rf"{re.escape(storage.TEMPORARY_PREFIX)}.*|\.export-.*|\.replaced-.*|ckpt-\d+_temp")


def remove_leftovers(root):
    """Delete the temporaries that dead processes left in `root`; only under its exclusive lock (no one writes)."""
    removed = 0
    for directory, folders, files in os.walk(root):
        if directory != root and lock.LOCK_FILE in files:
            folders[:] = []  # another work directory inside this one (a sweep's budgets/M*): its own claim cleans it
            continue
        for name in [name for name in folders if LEFTOVER.fullmatch(name)]:
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
            folders.remove(name)
            removed += 1
        for name in [name for name in files if LEFTOVER.fullmatch(name)]:
            os.remove(os.path.join(directory, name))
            removed += 1
    if removed:
        logging.info("%s: removed %d temporaries left by stopped processes", root, removed)


def trial_results(search_dir):
    """result.json of every trial of the search in `search_dir` that finished its training."""
    return glob.glob(os.path.join(search_dir, "trial_*", "result.json"))


def finished_rows(workdir):
    """{row: [results of its finished seeds 0, 1, ... up to the first missing one]} (results.json and model.keras
    both written)."""
    final = workdir.path("final")
    found = {}
    for name in sorted(os.listdir(final)) if os.path.isdir(final) else ():
        row, seed_index = rows.row_and_seed(name)
        if os.path.exists(workdir.final_results(row, seed_index)) and os.path.exists(
                workdir.final_model(row, seed_index)):
            found.setdefault(row, {})[seed_index] = schema.read_final_row(workdir.final_results(row, seed_index))
    return {row: [seeds[k] for k in range(len(seeds)) if all(j in seeds for j in range(k + 1))]
            for row, seeds in found.items() if 0 in seeds}


def served_model_path(workdir):
    """The served model's file: results.json's `exported` row and seed, else the served rule over the finished rows."""
    if os.path.exists(workdir.results):
        recorded = schema.read_run_results(workdir.results)
        if recorded.get("exported"):
            return workdir.final_model(recorded["exported"], recorded.get("exported_seed", 0))
    finished = finished_rows(workdir)
    row = rows.served_row({row: rows.combine_seeds(seeds) for row, seeds in finished.items()})
    if row is None:
        raise UserError(f"no finished final model in {workdir.path('final')}: pass --model (a .keras file or a "
                        "directory with model.keras or checkpoints/)")
    return workdir.final_model(row, rows.served_seed(finished[row]))
