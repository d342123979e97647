"""Backbone names (resnet32, wrn16_4, densenet40_12) and their shapes: one parser, so every entry point accepts and
rejects the same names. Pure Python: the configuration checks names against it without building a network."""

import dataclasses
import functools
import re

STEM_CHANNELS = 16  # every family's stem convolution
SHORTCUTS = ("zero_pad", "projection")  # the CIFAR ResNets' shortcut where a stage widens (kdas_tf.models.resnet)
# Work directories made before the shortcut was a choice hold networks with projections.
SHORTCUT_BEFORE_THE_FLAG = "projection"

VALID_NAMES = ("resnet{6n+2} (resnet20, resnet32, resnet56, resnet110, ...), "
               "wrn{depth}_{k} with (depth-4)%6==0 (wrn16_2, wrn40_1, wrn28_4, ...), "
               "or densenet{depth}_{k} with (depth-4)%3==0 (densenet40_12)")

_NAME = re.compile(r"(resnet)([1-9]\d*)|(wrn)([1-9]\d*)_([1-9]\d*)|(densenet)([1-9]\d*)_([1-9]\d*)")


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """A parsed backbone name. width is WRN's widening factor k or DenseNet's growth rate k (1 for ResNet)."""
    family: str
    depth: int
    width: int
    blocks_per_stage: int  # basic blocks (ResNet, WRN) or BN-ReLU-conv layers (DenseNet) per stage

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels at the end of each stage (a DenseNet's dense block, before its transition): where add-ons go."""
        if self.family == "resnet":
            return (16, 32, 64)
        if self.family == "wrn":
            return (16 * self.width, 32 * self.width, 64 * self.width)
        return tuple(STEM_CHANNELS + (b + 1) * self.blocks_per_stage * self.width for b in range(3))


@functools.lru_cache(maxsize=None)
def parse_network(name: str) -> NetworkSpec:
    """'wrn16_4' -> NetworkSpec('wrn', 16, 4, 2); ValueError naming the valid forms otherwise."""
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"unknown network {name!r}: expected {VALID_NAMES}")
    if match[1]:
        family, depth, width, fixed, per_block = "resnet", int(match[2]), 1, 2, 6
    elif match[3]:
        family, depth, width, fixed, per_block = "wrn", int(match[4]), int(match[5]), 4, 6
    else:
        family, depth, width, fixed, per_block = "densenet", int(match[7]), int(match[8]), 4, 3
    blocks, remainder = divmod(depth - fixed, per_block)
    if blocks < 1 or remainder:
        raise ValueError(f"unknown network {name!r}: depth {depth} does not fit; expected {VALID_NAMES}")
    return NetworkSpec(family, depth, width, blocks)


def same_family(backbone: str, max_blocks: int = 60) -> list[str]:
    """The networks of the backbone's family and width, shallowest first (resnet8, resnet14, ...; wrn10_2,
    wrn16_2, ...): the man-made networks a found model is compared with. Empty for DenseNet, whose
    comparisons the paper does not make."""
    spec = parse_network(backbone)
    if spec.family == "resnet":
        return [f"resnet{6 * n + 2}" for n in range(1, max_blocks)]
    if spec.family == "wrn":
        return [f"wrn{6 * n + 4}_{spec.width}" for n in range(1, max_blocks // 2)]
    return []


def num_stages(backbone: str) -> int:
    """Stages of the backbone, i.e. add-on positions (3 for every family)."""
    return len(parse_network(backbone).channels)


def stage_channels(backbone: str) -> tuple[int, ...]:
    """Channels at the end of each stage: the width the add-on convs of that stage run at."""
    return parse_network(backbone).channels


def check_task(num_classes: int, input_shape) -> None:
    """Rejects a class count or input shape no network can be built for, where it enters."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if len(input_shape) != 3 or not isinstance(input_shape[-1], int) or input_shape[-1] < 1:
        raise ValueError(f"input_shape must be (height, width, channels) with known channels, got {input_shape!r}")


def check_shortcut(shortcut: str) -> str:
    if shortcut not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {shortcut!r}: expected one of {', '.join(SHORTCUTS)}")
    return shortcut
