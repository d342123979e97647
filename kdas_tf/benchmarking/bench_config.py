"""What python -m kdas_tf.bench measures (kdas_tf.benchmarking.suite), as flags: free of TensorFlow, so the bench's
--help answers without importing it."""

import dataclasses
import typing

from kdas_tf.config import option
from kdas_tf.errors import UserError
from kdas_tf.models.networks import SHORTCUTS


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What the bench measures: its flags, one field each."""

    network: str = option("resnet32", "Student (and teacher member) network of the step rows.")
    shortcut: str = option("zero_pad", "Shortcut of the CIFAR ResNets measured (as the runs' --shortcut).",
                           choices=SHORTCUTS)
    batch_size: int = option(128, "Global batch size of the step rows.")
    num_teachers: int = option(5, "Teacher members N of the distillation rows.")
    steps: int = option(24, "Timed steps per row, after the warm-up steps, in --repeats chunks.")
    repeats: int = option(3, "Chunks the timed steps are split into; the rows take turns chunk by chunk and "
                          "each reports its fastest chunk.")
    warmup_steps: int = option(2, "Untimed steps per row (tracing, first allocations).")
    image_size: int = option(32, "Height and width of the random images.")
    channels: int = option(3, "Channels of the random images.")
    num_classes: int = option(100, "Classes of the random labels.")
    mixed_policy: str = option("auto", "Mixed-precision policy to compare with float32; auto: mixed_float16 on a "
                               "GPU, mixed_bfloat16 on a CPU with bf16 units, none otherwise.",
                               choices=("auto", "mixed_bfloat16", "mixed_float16", "none"))
    search_backbone: str = option("resnet8", "Backbone of the search rows (small, so 20 trials stay short).")
    search_dataset: str = option("digits", "Data of the search rows.", choices=("digits", "random"))
    search_trials: int = option(20, "Search trials whose time and resident memory are measured.")
    search_epochs: int = option(4, "Epochs of each search candidate (4, as flags/digits.cfg).")
    search_batch_size: int = option(64, "Batch size of the search candidates.")
    search_reference_trials: int = option(10, "Candidates (evenly spaced) retrained with CE as the search's "
                                          "reference.")
    json: typing.Optional[str] = option(None, "Write every measurement and ratio to this JSON file.")
    workdir: typing.Optional[str] = option(None, "Scratch directory (default: a temporary one, removed at the end).")

    def __post_init__(self):
        for name in ("batch_size", "num_teachers", "steps", "repeats", "warmup_steps", "image_size", "channels",
                     "num_classes", "search_trials", "search_epochs", "search_batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1, got {getattr(self, name)}")
