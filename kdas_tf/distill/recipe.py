"""How one network is trained and distilled, as names and checked values free of TensorFlow: kdas_tf.config offers
and checks them (and --help answers) without importing it. The losses, the compute precisions, where a distilling
step's targets come from, the scale given teachers take, and the recipe (TrainConfig, PAPER.md section 5)."""

import dataclasses

from kdas_tf.runtime.rows import LOSSES  # the names every layer shares (a row's L_T)

DISTILLING = ("kd", "od")  # the losses that imitate teacher targets
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
TEACHER_OUTPUTS = ("online", "cached")  # kdas_tf.distill.teacher_outputs: run the teachers, or read their cache
INPUT_SCALES = ("standardised", "pixels", "unit")  # what given teachers take (kdas_tf.distill.given_teachers)


def check_loss_name(loss, flag="--loss"):
    """Raise a ValueError naming the flag when `loss` is not one of LOSSES."""
    if loss not in LOSSES:
        raise ValueError(f"{flag}={loss!r} is not a loss: expected one of {', '.join(LOSSES)}")
    return loss


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How one network is trained (PAPER.md section 5 defaults)."""

    epochs: int = 200
    batch_size: int = 128
    learning_rate: float = 0.1
    lr_decay_at: tuple = (0.5, 0.75)  # fractions of training at which the rate drops
    lr_decay_factor: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    loss: str = "ce"
    temperature: float = 4.0
    alpha: float = 0.9
    seed: int = 0

    def __post_init__(self):
        check_loss_name(self.loss)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"--learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"--alpha must be in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be positive, got {self.temperature}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not 0.0 < self.lr_decay_factor <= 1.0:
            raise ValueError(f"--lr_decay_factor must be in (0, 1], got {self.lr_decay_factor}")
        if self.weight_decay < 0:
            raise ValueError(f"--weight_decay must be >= 0, got {self.weight_decay}")
        if any(not 0 < f < 1 for f in self.lr_decay_at):
            raise ValueError(f"--lr_decay_at takes fractions in (0, 1), got {list(self.lr_decay_at)}")
