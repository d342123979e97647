"""The seven add-on operations of the KDAS search space and the residual add-on module built from them.

Every operation keeps the feature map's shape (stride 1, same padding, the input's width), so any sequence of
them can be wrapped in a residual connection after any stage.
"""

from collections.abc import Sequence

import keras

from kdas_tf.models.architecture import ADDON_OPS, SKIP
from kdas_tf.models.layers import batch_norm, batch_norm_params, conv2d, conv_macs, conv_params


class _ShapePreserving(keras.layers.Layer):
    """Base of the operations: stride 1, same padding, the input's width, so the shape never changes."""

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="kdas_tf")
class ConvBNReLU(_ShapePreserving):
    """conv{k}x{k}: Conv(k)-BN-ReLU; sep{k}x{k} (separable=True): DepthwiseConv(k)-Conv1x1-BN-ReLU. No biases."""

    def __init__(self, kernel_size: int, separable: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = kernel_size
        self.separable = separable

    def build(self, input_shape):
        # Sublayers are made here because their width is the input's, known only now.
        self.depthwise = None
        if self.separable:
            self.depthwise = keras.layers.DepthwiseConv2D(
                self.kernel_size, padding="same", use_bias=False, depthwise_initializer="he_normal",
                name="depthwise", dtype=self.dtype_policy)
            self.depthwise.build(input_shape)
        self.conv = conv2d(input_shape[-1], 1 if self.separable else self.kernel_size, name="conv",
                           dtype=self.dtype_policy)
        self.bn = batch_norm(name="bn", dtype=self.dtype_policy)
        self.conv.build(input_shape)
        self.bn.build(input_shape)

    def call(self, x, training=None):
        if self.depthwise is not None:
            x = self.depthwise(x)
        return keras.ops.relu(self.bn(self.conv(x), training=training))

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "separable": self.separable}


@keras.saving.register_keras_serializable(package="kdas_tf")
class Pool3x3(_ShapePreserving):
    """maxpool3x3 / avgpool3x3: 3x3 pooling, stride 1, same padding (no weights)."""

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("max", "avg"):
            raise ValueError(f"unknown pool mode {mode!r}: expected 'max' or 'avg'")
        self.mode = mode

    def call(self, x):
        pool = keras.ops.max_pool if self.mode == "max" else keras.ops.average_pool
        return pool(x, pool_size=3, strides=1, padding="same")

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="kdas_tf")
class Skip(_ShapePreserving):
    """skip: the identity. Add-on modules drop it; it exists so every token id has a layer."""

    def call(self, x):
        return x


def check_op(op: str) -> str:
    if op not in ADDON_OPS:
        raise ValueError(f"unknown add-on operation {op!r}: expected one of {', '.join(ADDON_OPS)}")
    return op


def addon_op(op: str, name: str | None = None) -> keras.layers.Layer:
    """The layer of one operation name in ADDON_OPS."""
    check_op(op)
    if op == SKIP:
        return Skip(name=name)
    if op.startswith("conv"):
        return ConvBNReLU(int(op[4]), name=name)
    if op.startswith("sep"):
        return ConvBNReLU(int(op[3]), separable=True, name=name)
    return Pool3x3(op[:3], name=name)


def addon_op_params(op: str, channels: int) -> int:
    """Trainable parameters of `addon_op(op)` on a `channels`-wide feature map, without building it."""
    check_op(op)
    if op.startswith("conv"):
        return conv_params(channels, channels, int(op[4])) + batch_norm_params(channels)
    if op.startswith("sep"):
        kernel = int(op[3])
        return kernel * kernel * channels + conv_params(channels, channels, 1) + batch_norm_params(channels)
    return 0


def addon_op_macs(op: str, height: int, width: int, channels: int) -> int:
    """Multiply-accumulates of `addon_op(op)` on a height x width x channels feature map (kdas_tf.models.mac_count
    says what counts): a pool's 3x3 window per output value, nothing for skip."""
    check_op(op)
    if op.startswith("conv"):
        return conv_macs(height, width, channels, channels, int(op[4]))
    if op.startswith("sep"):
        kernel = int(op[3])
        return height * width * kernel * kernel * channels + conv_macs(height, width, channels, channels, 1)
    return 0 if op == SKIP else height * width * channels * 3 * 3


def addon_module(x, ops: Sequence[str], name: str):
    """x + f(x), f = the non-skip ops in order; x itself (no layer at all) when every op is skip."""
    ops = [op for op in ops if check_op(op) != SKIP]
    if not ops:
        return x
    y = x
    for i, op in enumerate(ops):
        repeats = ops[:i].count(op)
        y = addon_op(op, name=f"{name}_{op}" + (f"_{repeats + 1}" if repeats else ""))(y)
    return keras.layers.Add(name=f"{name}_add")([x, y])
