"""Architecture: a backbone plus, per stage, the add-on modules the search has chosen (a hashable value).

Pure Python (the names of the search space and their string form), so the configuration checks an architecture
without building a network."""

import dataclasses
from collections.abc import Sequence

from kdas_tf.models.networks import num_stages, parse_network

# Order matters: the controller's token ids index into this tuple (kdas_tf.models.addons builds each one).
ADDON_OPS = ("skip", "conv3x3", "conv5x5", "sep3x3", "sep5x5", "maxpool3x3", "avgpool3x3")
SKIP = "skip"

Module = tuple[str, ...]
Addons = tuple[tuple[Module, ...], ...]

STRING_FORMAT = ("backbone[:stage1/stage2/...]: stages separated by '/', modules within a stage by ',', "
                 "ops within a module by '+', e.g. 'resnet32:conv3x3+skip/sep5x5/avgpool3x3' "
                 "or 'resnet32' for the backbone alone")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """backbone + addons[stage][module][op]; one module per stage is added per search round.

    `Architecture("resnet32")` is the backbone alone. Modules keep their skip ops (they are the controller's
    choices); the network builder drops them.
    """
    backbone: str
    addons: Addons = ()

    def __post_init__(self):
        stages = num_stages(self.backbone)  # ValueError on an unknown backbone
        addons = self.addons or ((),) * stages
        if isinstance(addons, str) or len(addons) != stages:
            raise ValueError(f"architecture of {self.backbone!r} needs add-ons for {stages} stages, got {addons!r}")
        object.__setattr__(self, "addons", tuple(
            tuple(_module(ops, f"stage {s + 1} module {m + 1}") for m, ops in enumerate(stage))
            for s, stage in enumerate(addons)))

    @classmethod
    def backbone_only(cls, backbone: str) -> "Architecture":
        return cls(backbone)

    def with_addons(self, stage_ops: Sequence[Sequence[str] | str]) -> "Architecture":
        """One more module at the end of every stage; stage_ops[s] is its op sequence (a str is one op)."""
        if isinstance(stage_ops, str) or len(stage_ops) != len(self.addons):
            raise ValueError(f"with_addons needs one op sequence per stage ({len(self.addons)}), got {stage_ops!r}")
        return Architecture(self.backbone, tuple(
            stage + ((ops,) if isinstance(ops, str) else tuple(ops),)
            for stage, ops in zip(self.addons, stage_ops)))

    @property
    def num_stages(self) -> int:
        return len(self.addons)

    def canonical(self) -> "Architecture":
        """The same network with skips and identity modules removed: equal networks get equal values."""
        return Architecture(self.backbone, tuple(
            tuple(kept for kept in (tuple(op for op in ops if op != SKIP) for ops in stage) if kept)
            for stage in self.addons))

    def __str__(self) -> str:
        if not any(self.addons):
            return self.backbone
        return self.backbone + ":" + "/".join(",".join("+".join(ops) for ops in stage) for stage in self.addons)

    @classmethod
    def parse(cls, text: str) -> "Architecture":
        """Inverse of str(): 'resnet32:conv3x3+skip/sep5x5/avgpool3x3' (see STRING_FORMAT)."""
        if not isinstance(text, str):
            raise ValueError(f"malformed architecture {text!r}: expected a string {STRING_FORMAT}")
        backbone, colon, rest = text.strip().partition(":")
        parse_network(backbone)  # the unknown-network message beats a format complaint
        if not colon:
            return cls(backbone)
        stages = rest.split("/")
        if len(stages) != num_stages(backbone):
            raise ValueError(f"malformed architecture {text!r}: expected {num_stages(backbone)} stages, "
                             f"got {len(stages)}; format is {STRING_FORMAT}")
        addons = []
        for stage in stages:
            modules = tuple(tuple(module.split("+")) for module in stage.split(",")) if stage else ()
            if any("" in ops for ops in modules):
                raise ValueError(f"malformed architecture {text!r}: empty module or op in stage {stage!r}; "
                                 f"format is {STRING_FORMAT}")
            addons.append(modules)
        return cls(backbone, tuple(addons))


def as_architecture(arch: Architecture | str) -> Architecture:
    """Architecture values pass through; strings are parsed (Architecture.parse format)."""
    if isinstance(arch, Architecture):
        return arch
    if isinstance(arch, str):
        return Architecture.parse(arch)
    raise TypeError(f"expected an Architecture or its string form, got {type(arch).__name__}: {arch!r}")


def _module(ops: Sequence[str], where: str) -> Module:
    if isinstance(ops, str) or not isinstance(ops, Sequence) or not ops:
        raise ValueError(f"add-on module at {where} must be a non-empty sequence of ops from "
                         f"{', '.join(ADDON_OPS)} (use ('skip',) for nothing), got {ops!r}")
    for op in ops:
        if op not in ADDON_OPS:
            raise ValueError(f"unknown add-on operation {op!r} at {where}: expected one of {', '.join(ADDON_OPS)}")
    return tuple(ops)
