"""build_student: a backbone with the add-on modules inserted after each stage; build_network is its no-add-on case."""

import keras

from kdas_tf.models.addons import addon_module
from kdas_tf.models.architecture import Architecture, as_architecture
from kdas_tf.models.families import family_module
from kdas_tf.models.networks import check_shortcut, check_task, parse_network


def build_student(arch: Architecture | str, num_classes: int, input_shape=(32, 32, 3), *,
                  shortcut: str = "zero_pad") -> keras.Model:
    """Functional model, images [B, H, W, C] -> float32 logits [B, num_classes] (float32 under mixed precision too).

    shortcut: the CIFAR ResNets' shortcut where a stage widens, "zero_pad" (option A) or "projection"
    (kdas_tf.models.resnet); WideResNet and DenseNet ignore it.
    """
    arch = as_architecture(arch)
    check_task(num_classes, input_shape)
    check_shortcut(shortcut)
    spec = parse_network(arch.backbone)

    def end_of_stage(x, stage: int):
        for m, ops in enumerate(arch.addons[stage]):
            x = addon_module(x, ops, name=f"stage{stage + 1}_addon{m + 1}")
        return x

    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = family_module(spec).build_features(inputs, spec, end_of_stage, shortcut=shortcut)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=arch.backbone)


def build_network(name: str, num_classes: int, input_shape=(32, 32, 3), *, shortcut: str = "zero_pad") -> keras.Model:
    """The plain backbone (teachers, man-made baselines)."""
    return build_student(Architecture.backbone_only(name), num_classes, input_shape, shortcut=shortcut)
