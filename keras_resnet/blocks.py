"""Residual block builders for the Keras Functional API.

Each builder takes a Keras tensor and returns a Keras tensor, so blocks can
be composed into any network:

    inputs = keras.Input((32, 32, 3))
    x = cifar_stem(inputs)
    x = basic_block(x, 32, strides=2, name="stage2_block1")
    outputs = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    model = keras.Model(inputs, outputs)

Layer names are public API: weight converters and `get_layer` look layers up
by them. A block named "stage2_block1" creates "stage2_block1_conv1",
"stage2_block1_bn1", "stage2_block1_relu1", ..., "stage2_block1_add" and
"stage2_block1_out", with 1-based numbers counted within the block.

NOTE: the builders assume channels_last tensors, `(batch, height, width,
channels)`, which is Keras's default image data format.
"""

import keras

from keras_resnet import config
from keras_resnet.layers import ZeroPadShortcut


def conv_bn(x, filters, kernel_size, strides=1, activation=True, name="conv", index=""):
    """Apply a bias-free convolution, BatchNorm and optionally ReLU.

    A strided convolution with a kernel larger than 1 pads `kernel_size // 2`
    pixels on every side and then convolves without padding, as PyTorch does.
    Keras's `padding="same"` pads more on the bottom and right at stride 2, so
    weights from torchvision would give different outputs.

    Args:
        x: Keras tensor, channels_last.
        filters: int, output channels.
        kernel_size: int, square kernel size.
        strides: int, convolution stride. Defaults to 1.
        activation: bool, whether a ReLU follows the BatchNorm. Defaults to True.
        name: str, prefix of the layer names. Defaults to "conv".
        index: str or int, suffix that numbers the layers within a block, so
            `name="stem", index=1` makes "stem_conv1", "stem_bn1" and
            "stem_relu1". Defaults to "" (no suffix).

    Returns:
        The output Keras tensor.
    """
    strides = config.check_int("strides", strides, minimum=1)
    kernel_size = config.check_int("kernel_size", kernel_size, minimum=1)
    padding = "same"
    if strides > 1 and kernel_size > 1:
        x = keras.layers.ZeroPadding2D(padding=kernel_size // 2, name=f"{name}_pad{index}")(x)
        padding = "valid"

    # No bias: the BatchNorm right after the convolution has its own offset.
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=keras.initializers.get(config.CONV_INITIALIZER),
        name=f"{name}_conv{index}",
    )(x)
    x = keras.layers.BatchNormalization(
        epsilon=config.BN_EPSILON, momentum=config.BN_MOMENTUM, name=f"{name}_bn{index}"
    )(x)
    if activation:
        x = keras.layers.ReLU(name=f"{name}_relu{index}")(x)
    return x


def _shortcut(x, filters, strides, shortcut, name):
    """Return the identity, or a projection where the shape changes."""
    config.check_int("strides", strides, minimum=1)
    if strides == 1 and x.shape[-1] == filters:
        return x
    if shortcut == "zero_pad":
        return ZeroPadShortcut(filters, strides, name=f"{name}_shortcut")(x)
    return conv_bn(x, filters, 1, strides=strides, activation=False, name=f"{name}_shortcut")


def _merge(residual, shortcut, name):
    x = keras.layers.Add(name=f"{name}_add")([shortcut, residual])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def basic_block(x, filters, strides=1, shortcut="projection", name="block"):
    """Build a basic residual block: two 3x3 convolutions and a shortcut.

    Args:
        x: Keras tensor, channels_last.
        filters: int, output channels of both convolutions.
        strides: int, stride of the first convolution and of the shortcut.
            Defaults to 1.
        shortcut: str, what replaces the identity when the shape changes:
            "projection" (1x1 convolution and BatchNorm) or "zero_pad"
            (subsample and pad channels with zeros, no parameters). Defaults
            to "projection".
        name: str, prefix of every layer name. Defaults to "block".

    Returns:
        The output Keras tensor, with `filters` channels.

    Raises:
        ValueError: if `shortcut` is not one of "projection" or "zero_pad".
    """
    config.check_choice("shortcut", shortcut, config.SHORTCUTS)
    identity = _shortcut(x, filters, strides, shortcut, name)

    x = conv_bn(x, filters, 3, strides=strides, name=name, index=1)
    x = conv_bn(x, filters, 3, activation=False, name=name, index=2)

    return _merge(x, identity, name)


def bottleneck_block(x, filters, strides=1, shortcut="projection", name="block"):
    """Build a bottleneck residual block: 1x1, 3x3 and 1x1 convolutions.

    The stride sits on the 3x3 convolution, as in torchvision ("ResNet v1.5");
    the original paper and `keras.applications` put it on the first 1x1.

    Args:
        x: Keras tensor, channels_last.
        filters: int, inner width. The block outputs `4 * filters` channels.
        strides: int, stride of the 3x3 convolution and of the shortcut.
            Defaults to 1.
        shortcut: str, "projection" or "zero_pad", as in `basic_block`.
            Defaults to "projection".
        name: str, prefix of every layer name. Defaults to "block".

    Returns:
        The output Keras tensor, with `4 * filters` channels.

    Raises:
        ValueError: if `shortcut` is not one of "projection" or "zero_pad".
    """
    config.check_choice("shortcut", shortcut, config.SHORTCUTS)
    out_filters = filters * config.BOTTLENECK_EXPANSION
    identity = _shortcut(x, out_filters, strides, shortcut, name)

    x = conv_bn(x, filters, 1, name=name, index=1)
    x = conv_bn(x, filters, 3, strides=strides, name=name, index=2)
    x = conv_bn(x, out_filters, 1, activation=False, name=name, index=3)

    return _merge(x, identity, name)


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


def stage(x, block, filters, blocks, strides=2, shortcut="projection", name="stage"):
    """Stack residual blocks; only the first one changes the shape.

    Args:
        x: Keras tensor, channels_last.
        block: "basic", "bottleneck", or a block builder with the signature
            of `basic_block`.
        filters: int, the `filters` argument of every block.
        blocks: int, number of blocks, at least 1.
        strides: int, stride of the first block. Defaults to 2.
        shortcut: str, "projection" or "zero_pad". Defaults to "projection".
        name: str, stage prefix; blocks are named "{name}_block1",
            "{name}_block2", .... Defaults to "stage".

    Returns:
        The output Keras tensor.

    Raises:
        ValueError: if `block` is an unknown name or `blocks` is below 1.
    """
    if not callable(block):
        block = BLOCKS[config.check_choice("block", block, tuple(BLOCKS))]
    blocks = config.check_int("blocks", blocks, minimum=1)

    for i in range(1, blocks + 1):
        x = block(x, filters, strides=strides if i == 1 else 1, shortcut=shortcut, name=f"{name}_block{i}")
    return x


def imagenet_stem(x, filters=64, name="stem"):
    """Build the ImageNet stem: 7x7/2 convolution, BatchNorm, ReLU, 3x3/2 max-pool.

    Both the convolution and the pool pad symmetrically, as torchvision does.
    The pool pads with zeros, which equals PyTorch's -inf padding here because
    the input has just passed a ReLU.

    Args:
        x: Keras tensor, channels_last.
        filters: int, convolution filters. Defaults to 64.
        name: str, prefix of the layer names. Defaults to "stem".

    Returns:
        The output Keras tensor, a quarter of the input's height and width.
    """
    x = conv_bn(x, filters, 7, strides=2, name=name, index=1)
    x = keras.layers.ZeroPadding2D(padding=1, name=f"{name}_pool_pad")(x)
    return keras.layers.MaxPooling2D(pool_size=3, strides=2, name=f"{name}_pool")(x)


def cifar_stem(x, filters=16, name="stem"):
    """Build the CIFAR stem: one 3x3 convolution, BatchNorm and ReLU.

    Args:
        x: Keras tensor, channels_last.
        filters: int, convolution filters. Defaults to 16.
        name: str, prefix of the layer names. Defaults to "stem".

    Returns:
        The output Keras tensor, of the input's height and width.
    """
    return conv_bn(x, filters, 3, name=name, index=1)
