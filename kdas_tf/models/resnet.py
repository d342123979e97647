"""CIFAR ResNet-(6n+2) (He et al. 2016): basic blocks, post-activation, 16/32/64 channels.

Where a stage halves the resolution and widens the channels, the shortcut is He et al.'s option A by
default ("zero_pad": x subsampled by 2 and zero-padded in channels, no parameters), whose counts fit the
paper's tables best (PAPER.md section 3: 5 x ResNet-32 = 2.350M, ResNet-110 1.7338M); "projection" is
option B, a 1x1 conv + BN.
"""

from collections.abc import Callable

import keras

from kdas_tf.models.layers import basic_block_macs, batch_norm, batch_norm_params, conv2d, conv_params, relu
from kdas_tf.models.networks import STEM_CHANNELS, check_shortcut


@keras.saving.register_keras_serializable(package="kdas_tf")
class ZeroPadShortcut(keras.layers.Layer):
    """Option A: x[:, ::s, ::s, :] with zero channels appended up to `channels` (no weights)."""

    def __init__(self, channels: int, strides: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.strides = strides

    def call(self, x):
        x = x[:, ::self.strides, ::self.strides, :]
        return keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, self.channels - x.shape[-1]]])

    def compute_output_shape(self, input_shape):
        def subsampled(size):
            return None if size is None else -(-size // self.strides)

        return (input_shape[0], subsampled(input_shape[1]), subsampled(input_shape[2]), self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "strides": self.strides}


def build_features(x, spec, end_of_stage: Callable, shortcut: str = "zero_pad") -> keras.KerasTensor:
    """Stem and three stages; `end_of_stage(x, stage)` inserts the add-ons after each stage's last block."""
    check_shortcut(shortcut)
    x = conv2d(STEM_CHANNELS, 3, name="stem_conv")(x)
    x = batch_norm(name="stem_bn")(x)
    x = relu("stem_relu")(x)
    for stage, channels in enumerate(spec.channels):
        for block in range(spec.blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, channels, strides, shortcut, name=f"stage{stage + 1}_block{block + 1}")
        x = end_of_stage(x, stage)
    return x


def _basic_block(x, channels: int, strides: int, shortcut: str, name: str):
    identity = x
    if strides != 1 or x.shape[-1] != channels:
        if shortcut == "zero_pad":
            identity = ZeroPadShortcut(channels, strides, name=f"{name}_shortcut")(x)
        else:
            identity = conv2d(channels, 1, strides, name=f"{name}_shortcut_conv")(x)
            identity = batch_norm(name=f"{name}_shortcut_bn")(identity)
    y = conv2d(channels, 3, strides, name=f"{name}_conv1")(x)
    y = batch_norm(name=f"{name}_bn1")(y)
    y = relu(f"{name}_relu1")(y)
    y = conv2d(channels, 3, name=f"{name}_conv2")(y)
    y = batch_norm(name=f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([identity, y])
    return relu(f"{name}_out")(y)


def count_features(spec, input_channels: int, shortcut: str = "zero_pad") -> int:
    """Trainable parameters of `build_features`, by the same loop without building anything."""
    check_shortcut(shortcut)
    total = conv_params(input_channels, STEM_CHANNELS, 3) + batch_norm_params(STEM_CHANNELS)
    in_channels = STEM_CHANNELS
    for stage, channels in enumerate(spec.channels):
        for block in range(spec.blocks_per_stage):
            total += conv_params(in_channels, channels, 3) + conv_params(channels, channels, 3)
            total += 2 * batch_norm_params(channels)
            strides = 2 if stage > 0 and block == 0 else 1
            if shortcut == "projection" and (strides != 1 or in_channels != channels):
                total += conv_params(in_channels, channels, 1) + batch_norm_params(channels)
            in_channels = channels
    return total


def count_feature_macs(spec, input_shape, shortcut: str = "zero_pad") -> tuple[int, list[tuple[int, int]]]:
    """Multiply-accumulates of `build_features` (kdas_tf.models.mac_count) and each stage's (height, width)."""
    check_shortcut(shortcut)
    return basic_block_macs(spec, input_shape, projections=shortcut == "projection")
