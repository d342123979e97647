"""The run's configuration: frozen sections, built once (from flags, or by hand in Python), checked once.

    Config(run=RunConfig(workdir="runs/x"), data=DataConfig(dataset="digits"), ...)

Each field is also its command-line flag: `option(...)` records the flag's name (when it differs from the
field's), its help and its choices, so the entry points define their flags from these classes
(`define_flags`), read them back into a Config (`from_flags`) and write a Config as flags for the workers
of a parallel search (`to_flags`). Every value is judged when its section is made, and the sections
against each other when the Config is made, so the Python API and the command lines refuse the same
mistakes with the same one-line messages. Configuration only: names are checked against the grammars of
networks, architectures, losses and datasets, but nothing is loaded, built, counted or read from disk here;
what needs the data's metadata, the teachers' files or a network's size (the budget in parameters, a
reference's classes, the given teachers' hashes) is resolved once by kdas_tf.assembly when a job starts,
before its work directory is claimed.

Read from the bottom up, each module importing only those above it in this list:
- options.py: `option`, a field and its flag; `flag_name`.
- sections.py: the sections RunConfig, DataConfig, RecipeConfig, ModelConfig, TeacherConfig,
  ControllerSettings, ParallelConfig, ExportConfig and TrainJob.
- search_section.py: SearchConfig, with the grammar of --budget.
- tree.py: Config, the sections checked against each other, and its settings.json; SECTIONS by name.
- command_line.py: flags from the sections and back (define_flags ... to_flags): the only one that reads flags.
"""

from kdas_tf.config.command_line import define_flags, flag_argument, from_args, from_flags, section_from_flags, to_flags
from kdas_tf.config.options import flag_name, option
from kdas_tf.config.search_section import SearchConfig
from kdas_tf.config.sections import (ControllerSettings, DataConfig, ExportConfig, ModelConfig, ParallelConfig,
                                     RecipeConfig, RunConfig, TeacherConfig, TrainJob)
from kdas_tf.config.tree import SEARCH_SECTIONS, SECTIONS, Config

__all__ = ["Config", "ControllerSettings", "DataConfig", "ExportConfig", "ModelConfig", "ParallelConfig",
           "RecipeConfig", "RunConfig", "SEARCH_SECTIONS", "SECTIONS", "SearchConfig", "TeacherConfig", "TrainJob",
           "define_flags", "flag_argument", "flag_name", "from_args", "from_flags", "option", "section_from_flags",
           "to_flags"]
