"""Stems: the layers before the first residual stage.

Layer names start with "stem_": "stem_conv1", "stem_bn1", "stem_relu1", ...,
"stem_pool_pad" and "stem_pool".
"""

import keras

from keras_resnet.blocks import batch_norm
from keras_resnet.blocks import conv
from keras_resnet.blocks import conv_bn


def imagenet_stem(x, filters=64, name="stem", *, deep=False, preact=False, use_bias=False):
    """Build the ImageNet stem: 7x7/2 convolution, BatchNorm, ReLU, 3x3/2 max-pool.

    Both the convolution and the pool pad symmetrically, as torchvision does.
    The pool pads with zeros, which equals PyTorch's -inf padding here because
    the input has just passed a ReLU.

    Args:
        x: Keras tensor, channels_last.
        filters: int, convolution filters. Defaults to 64.
        name: str, prefix of the layer names. Defaults to "stem".
        deep: bool, replace the 7x7 convolution by three 3x3 convolutions with
            `filters // 2`, `filters // 2` and `filters` filters, each followed
            by BatchNorm and ReLU (ResNet-C of He et al. 2019). Defaults to
            False.
        preact: bool, leave out the last BatchNorm and ReLU, because the first
            pre-activation block starts with its own, as keras.applications'
            V2 models do. The pool then pads with zeros, as keras.applications
            does. Defaults to False.
        use_bias: bool, give the convolutions a bias. Defaults to False.

    Returns:
        The output Keras tensor, a quarter of the input's height and width.
    """
    if deep:
        half = max(1, filters // 2)
        x = conv_bn(x, half, 3, strides=2, name=name, index=1, use_bias=use_bias)
        x = conv_bn(x, half, 3, name=name, index=2, use_bias=use_bias)
        x = conv(x, filters, 3, name=name, index=3, use_bias=use_bias)
        last = 3
    else:
        x = conv(x, filters, 7, strides=2, name=name, index=1, use_bias=use_bias)
        last = 1
    if not preact:
        x = batch_norm(x, name=name, index=last)
    x = keras.layers.ZeroPadding2D(padding=1, name=f"{name}_pool_pad")(x)
    return keras.layers.MaxPooling2D(pool_size=3, strides=2, name=f"{name}_pool")(x)


def cifar_stem(x, filters=16, name="stem", *, preact=False, use_bias=False):
    """Build the CIFAR stem: one 3x3 convolution, BatchNorm and ReLU.

    Args:
        x: Keras tensor, channels_last.
        filters: int, convolution filters. Defaults to 16.
        name: str, prefix of the layer names. Defaults to "stem".
        preact: bool, the convolution alone, because the first pre-activation
            block starts with BatchNorm and ReLU. Defaults to False.
        use_bias: bool, give the convolution a bias. Defaults to False.

    Returns:
        The output Keras tensor, of the input's height and width.
    """
    if preact:
        return conv(x, filters, 3, name=name, index=1, use_bias=use_bias)
    return conv_bn(x, filters, 3, name=name, index=1, use_bias=use_bias)
