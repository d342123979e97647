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
    turns: int = option(12, "Turns of the step rows (at least 5): in each, every row times its measurement and "
                        "reference back to back and gives one ratio; a row reports their median and interval.")
    chunk_seconds: float = option(1.0, "Each measurement's chunk (steps timed as one) is calibrated to last at "
                                  "least this long.")
    epoch_steps: int = option(8, "Batches in the random data's epoch: the most steps a training chunk takes.")
    max_warmups: int = option(10, "Untimed one-step calls at most, before a measurement's step time settles "
                              "(tracing, first allocations).")
    image_size: int = option(32, "Height and width of the random images.")
    channels: int = option(3, "Channels of the random images.")
    num_classes: int = option(100, "Classes of the random labels.")
    mixed_policy: str = option("auto", "Mixed-precision policy to compare with float32; auto: mixed_float16 on a "
                               "GPU, mixed_bfloat16 on a CPU with bf16 units, none otherwise.",
                               choices=("auto", "mixed_bfloat16", "mixed_float16", "none"))
    search_backbone: str = option("resnet8", "Backbone of the search rows (small, so 20 trials stay short).")
    search_dataset: str = option("digits", "Data of the search rows.", choices=("digits", "random"))
    search_trials: int = option(20, "Search trials (at least 5): each is a turn of the search row, trained by the "
                                "search and with CE back to back; resident memory is read after each.")
    search_epochs: int = option(4, "Epochs of each search candidate (4, as flags/digits.cfg).")
    search_batch_size: int = option(64, "Batch size of the search candidates.")
    quick: bool = option(False, "Small settings for CI and tests (QUICK in benchmarking/suite.py; flags given "
                         "explicitly win): a minute, ratios not meant for docs.")
    json: typing.Optional[str] = option(None, "Write every measurement and ratio to this JSON file.")
    workdir: typing.Optional[str] = option(None, "Scratch directory (default: a temporary one, removed at the end).")

    def __post_init__(self):
        for name in ("batch_size", "num_teachers", "epoch_steps", "max_warmups", "image_size", "channels",
                     "num_classes", "search_epochs", "search_batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ("turns", "search_trials"):
            if getattr(self, name) < MIN_TURNS:
                raise UserError(f"--{name} must be at least {MIN_TURNS} (the min-max of 5 turns holds the true "
                                f"median 94% of the time, of fewer turns too rarely to judge a target), got "
                                f"{getattr(self, name)}")
        if not self.chunk_seconds > 0:
            raise UserError(f"--chunk_seconds must be positive, got {self.chunk_seconds}")


MIN_TURNS = 5
# --quick: tiny networks and images, short chunks, the fewest turns.
QUICK = dict(network="resnet8", batch_size=32, num_teachers=2, turns=MIN_TURNS, chunk_seconds=0.05, epoch_steps=16,
             max_warmups=4, image_size=8, channels=1, num_classes=10, search_dataset="random",
             search_trials=MIN_TURNS, search_epochs=1, search_batch_size=128)


def quick(config, given=()):
    """`config` with QUICK's settings, but for the flags named in `given` (set on the command line)."""
    return dataclasses.replace(config, **{k: v for k, v in QUICK.items() if k not in given})
