"""Conv and BatchNorm with the settings every kdas_tf network shares, so the families cannot drift apart."""

import contextlib

import keras
import tensorflow as tf

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
