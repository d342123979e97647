"""Conv and BatchNorm with the settings every kdas_tf network shares, so the families cannot drift apart."""

import contextlib

import keras
import tensorflow as tf

from kdas_tf.models.networks import STEM_CHANNELS

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
_sync_batchnorm = [True]  # set by sync_batchnorm(): the run's --sync_batchnorm, for every network built inside


@contextlib.contextmanager
def sync_batchnorm(enabled: bool):
    """Whether the BatchNorms built inside synchronise their statistics across replicas (when there are several);
    the caller's choice is restored after."""
    _sync_batchnorm.append(bool(enabled))
    try:
        yield
    finally:
        _sync_batchnorm.pop()


def conv2d(filters: int, kernel_size: int, strides: int = 1, name: str | None = None, **kwargs) -> keras.layers.Conv2D:
    """Same-padded conv without bias (a BatchNorm always follows, directly or after a residual add / concat)."""
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=name, **kwargs)


def batch_norm(name: str | None = None, **kwargs) -> keras.layers.BatchNormalization:
    """BatchNorm with the Torch-style constants of the CIFAR recipes (momentum 0.9, eps 1e-5).

    Built under a strategy with more than one replica, its batch statistics are synchronised across the
    replicas (unless built inside sync_batchnorm(False)): each replica sees global_batch / k images, and
    statistics of 128/k images would make a k-GPU training another recipe than the paper's. With one
    replica it is the plain layer.
    """
    synchronized = (_sync_batchnorm[-1] and tf.distribute.has_strategy()
                    and tf.distribute.get_strategy().num_replicas_in_sync > 1)
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name,
                                           synchronized=synchronized, **kwargs)


def relu(name: str) -> keras.layers.ReLU:
    return keras.layers.ReLU(name=name)


def batch_norm_params(channels: int) -> int:
    """Trainable weights of one BatchNorm (gamma and beta; the moving statistics are not trained)."""
    return 2 * channels


def conv_params(in_channels: int, out_channels: int, kernel_size: int) -> int:
    return kernel_size * kernel_size * in_channels * out_channels


def conv_macs(height: int, width: int, in_channels: int, out_channels: int, kernel_size: int) -> int:
    """Multiply-accumulates of a convolution whose output is height x width x out_channels."""
    return height * width * conv_params(in_channels, out_channels, kernel_size)


def strided(size: int, strides: int) -> int:
    """A same-padded convolution's output size along one axis."""
    return -(-size // strides)


def basic_block_macs(spec, input_shape, *, projections: bool) -> tuple[int, list[tuple[int, int]]]:
    """MACs of a stem conv and three stages of basic blocks (CIFAR ResNet, WRN: two 3x3 convs each, the first strided
    by 2 where a stage starts; with `projections`, a 1x1 conv shortcut where the shape changes), and each stage's
    (height, width)."""
    height, width, in_channels = input_shape
    total = conv_macs(height, width, in_channels, STEM_CHANNELS, 3)
    in_channels, sizes = STEM_CHANNELS, []
    for stage, channels in enumerate(spec.channels):
        for block in range(spec.blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            height, width = strided(height, strides), strided(width, strides)
            total += conv_macs(height, width, in_channels, channels, 3)
            total += conv_macs(height, width, channels, channels, 3)
            if projections and (strides != 1 or in_channels != channels):
                total += conv_macs(height, width, in_channels, channels, 1)
            in_channels = channels
        sizes.append((height, width))
    return total, sizes
