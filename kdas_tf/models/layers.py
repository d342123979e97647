"""Conv and BatchNorm with the settings every kdas_tf network shares, so the families cannot drift apart."""

import keras

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def conv2d(filters: int, kernel_size: int, strides: int = 1, name: str | None = None, **kwargs) -> keras.layers.Conv2D:
    """Same-padded conv without bias (a BatchNorm always follows, directly or after a residual add / concat)."""
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=name, **kwargs)


def batch_norm(name: str | None = None, **kwargs) -> keras.layers.BatchNormalization:
    """BatchNorm with the Torch-style constants of the CIFAR recipes (momentum 0.9, eps 1e-5)."""
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name, **kwargs)


def relu(name: str) -> keras.layers.ReLU:
    return keras.layers.ReLU(name=name)


def batch_norm_params(channels: int) -> int:
    """Trainable weights of one BatchNorm (gamma and beta; the moving statistics are not trained)."""
    return 2 * channels


def conv_params(in_channels: int, out_channels: int, kernel_size: int) -> int:
    return kernel_size * kernel_size * in_channels * out_channels
