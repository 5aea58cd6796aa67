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
"stage2_block1_out", with 1-based numbers counted within the block. Options
add layers under the same prefix: "_preact_bn" and "_preact_relu"
(pre-activation, whose blocks end at "_add"), "_se_*" (squeeze-and-excitation),
"_drop_path" (stochastic depth) and "_shortcut_pool" (average-pool shortcut).

NOTE: the builders assume channels_last tensors, `(batch, height, width,
channels)`, which is Keras's default image data format.
"""

import keras

from keras_resnet import config
from keras_resnet.layers import DropPath
from keras_resnet.layers import ZeroPadShortcut


def conv(x, filters, kernel_size, strides=1, name="conv", index="", *, groups=1, use_bias=False):
    """Apply a convolution that pads like PyTorch, without BatchNorm.

    A strided convolution with a kernel larger than 1 pads `kernel_size // 2`
    pixels on every side and then convolves without padding, as PyTorch does.
    Keras's `padding="same"` pads more on the bottom and right at stride 2, so
    weights from torchvision would give different outputs.

    Args:
        x: Keras tensor, channels_last.
        filters: int, output channels.
        kernel_size: int, square kernel size.
        strides: int, convolution stride. Defaults to 1.
        name: str, prefix of the layer names. Defaults to "conv".
        index: str or int, suffix of the layer names: "{name}_conv{index}"
            and "{name}_pad{index}". Defaults to "".
        groups: int, grouped convolution (ResNeXt); `filters` and the input
            channels must both be multiples of it. Defaults to 1.
        use_bias: bool, whether the convolution adds a bias. Defaults to False.

    Returns:
        The output Keras tensor.
    """
    strides = config.check_int("strides", strides, minimum=1)
    kernel_size = config.check_int("kernel_size", kernel_size, minimum=1)
    padding = "same"
    if strides > 1 and kernel_size > 1:
        x = keras.layers.ZeroPadding2D(padding=kernel_size // 2, name=f"{name}_pad{index}")(x)
        padding = "valid"

    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
        use_bias=use_bias,
        kernel_initializer=keras.initializers.get(config.CONV_INITIALIZER),
        name=f"{name}_conv{index}",
    )(x)


def batch_norm(x, activation=True, name="conv", index="", *, zero_gamma=False):
    """Apply BatchNorm with the package's settings, then optionally ReLU.

    Creates "{name}_bn{index}" and "{name}_relu{index}". With
    `zero_gamma=True` the scale starts at zero, so a residual branch that ends
    here starts as the zero function (Goyal et al. 2017, "Accurate, Large
    Minibatch SGD", section 5.1).
    """
    x = keras.layers.BatchNormalization(
        epsilon=config.BN_EPSILON,
        momentum=config.BN_MOMENTUM,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=f"{name}_bn{index}",
    )(x)
    if activation:
        x = keras.layers.ReLU(name=f"{name}_relu{index}")(x)
    return x


def conv_bn(x, filters, kernel_size, strides=1, activation=True, name="conv", index="", **conv_options):
    """Apply a convolution, BatchNorm and optionally ReLU.

    The convolution pads like PyTorch (see `conv`) and has no bias unless
    `use_bias=True`, because the BatchNorm right after it has its own offset.

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
        **conv_options: `groups` and `use_bias` of `conv`, and `zero_gamma`
            of `batch_norm`.

    Returns:
        The output Keras tensor.
    """
    zero_gamma = conv_options.pop("zero_gamma", False)
    x = conv(x, filters, kernel_size, strides, name=name, index=index, **conv_options)
    return batch_norm(x, activation, name=name, index=index, zero_gamma=zero_gamma)


def squeeze_excitation(x, ratio=config.DEFAULT_SE_RATIO, name="block"):
    """Rescale channels by a squeeze-and-excitation gate (Hu et al. 2018).

    Global average pooling, a 1x1 convolution to `channels // ratio`
    channels (at least 1), ReLU, a 1x1 convolution back and a sigmoid give
    one factor per channel. timm rounds the reduced width to a multiple of 8
    instead, which agrees at the widths of SE-ResNet-50 and deeper.

    Args:
        x: Keras tensor, channels_last.
        ratio: number > 0, channel reduction ratio. Defaults to 16.
        name: str, prefix of the layer names "{name}_se_pool" to
            "{name}_se_scale". Defaults to "block".

    Returns:
        The rescaled Keras tensor, of the input's shape.
    """
    ratio = config.check_positive_number("se_ratio", ratio)
    channels = x.shape[-1]
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
    gate = keras.layers.Conv2D(max(1, int(channels // ratio)), 1, name=f"{name}_se_conv1")(gate)
    gate = keras.layers.ReLU(name=f"{name}_se_relu")(gate)
    gate = keras.layers.Conv2D(channels, 1, name=f"{name}_se_conv2")(gate)
    gate = keras.layers.Activation("sigmoid", name=f"{name}_se_gate")(gate)
    return keras.layers.Multiply(name=f"{name}_se_scale")([x, gate])


def _shortcut(x, activated, filters, strides, shortcut, name, options):
    """Return the identity, or a projection or zero-pad where the shape changes."""
    config.check_int("strides", strides, minimum=1)
    if strides == 1 and x.shape[-1] == filters:
        return x
    if shortcut == "zero_pad":
        return ZeroPadShortcut(filters, strides, name=f"{name}_shortcut")(x)

    # ResNet-D (He et al. 2019): average-pool first so the 1x1 projection
    # sees every pixel instead of one in four.
    if options["avg_down"] and strides > 1:
        activated = keras.layers.AveragePooling2D(strides, strides, padding="same", name=f"{name}_shortcut_pool")(
            activated
        )
        strides = 1
    bias = options["conv_bias"]
    if options["preact"]:
        return conv(activated, filters, 1, strides, name=f"{name}_shortcut", use_bias=bias)
    return conv_bn(activated, filters, 1, strides, activation=False, name=f"{name}_shortcut", use_bias=bias)


def _residual_block(x, convs, strides, shortcut, name, options):
    """Build a block whose branch applies `convs`, a list of (filters, kernel, strides, groups)."""
    config.check_choice("shortcut", shortcut, config.SHORTCUTS)
    out_filters = convs[-1][0]
    bias = options["conv_bias"]

    if options["preact"]:
        # He et al. 2016b: BatchNorm and ReLU come before each convolution, and
        # a projection shortcut reads the activated input as well.
        activated = batch_norm(x, name=f"{name}_preact")
        identity = _shortcut(x, activated, out_filters, strides, shortcut, name, options)
        y = activated
        for index, (filters, kernel_size, conv_strides, groups) in enumerate(convs, start=1):
            if index > 1:
                y = batch_norm(y, name=name, index=index - 1)
            y = conv(y, filters, kernel_size, conv_strides, name=name, index=index, groups=groups, use_bias=bias)
    else:
        identity = _shortcut(x, x, out_filters, strides, shortcut, name, options)
        y = x
        for index, (filters, kernel_size, conv_strides, groups) in enumerate(convs, start=1):
            last = index == len(convs)
            y = conv_bn(
                y,
                filters,
                kernel_size,
                conv_strides,
                activation=not last,
                name=name,
                index=index,
                groups=groups,
                use_bias=bias,
                zero_gamma=last and options["zero_init_last_gamma"],
            )

    if options["se_ratio"]:
        y = squeeze_excitation(y, options["se_ratio"], name=name)
    if options["drop_rate"]:
        y = DropPath(options["drop_rate"], name=f"{name}_drop_path")(y)
    x = keras.layers.Add(name=f"{name}_add")([identity, y])
    if options["preact"]:
        return x
    return keras.layers.ReLU(name=f"{name}_out")(x)


def _block_options(
    preact=False,
    groups=1,
    width_per_group=config.BASE_WIDTH_PER_GROUP,
    se_ratio=None,
    drop_rate=0.0,
    zero_init_last_gamma=False,
    avg_down=False,
    stride_in_1x1=False,
    conv_bias=False,
):
    return {
        "preact": preact,
        "groups": config.check_int("groups", groups, minimum=1),
        "width_per_group": config.check_int("width_per_group", width_per_group, minimum=1),
        "se_ratio": se_ratio,
        "drop_rate": config.check_in_range("drop_rate", drop_rate, 0.0, 1.0, "a number in [0, 1)"),
        "zero_init_last_gamma": zero_init_last_gamma,
        "avg_down": avg_down,
        "stride_in_1x1": stride_in_1x1,
        "conv_bias": conv_bias,
    }


def basic_block(x, filters, strides=1, shortcut="projection", name="block", **options):
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
        **options: see `bottleneck_block`; `groups`, `width_per_group` and
            `stride_in_1x1` must keep their defaults.

    Returns:
        The output Keras tensor, with `filters` channels.

    Raises:
        ValueError: if `shortcut` is not one of "projection" or "zero_pad",
            or a bottleneck-only option is set.
    """
    options = _block_options(**options)
    for key in ("groups", "width_per_group", "stride_in_1x1"):
        if options[key] != _block_options()[key]:
            raise ValueError(f"`{key}` applies to bottleneck blocks; received {key}={options[key]!r}.")
    convs = [(filters, 3, strides, 1), (filters, 3, 1, 1)]
    return _residual_block(x, convs, strides, shortcut, name, options)


def bottleneck_block(x, filters, strides=1, shortcut="projection", name="block", **options):
    """Build a bottleneck residual block: 1x1, 3x3 and 1x1 convolutions.

    The stride sits on the 3x3 convolution, as in torchvision ("ResNet v1.5");
    the original paper and `keras.applications` put it on the first 1x1
    (`stride_in_1x1=True`).

    Args:
        x: Keras tensor, channels_last.
        filters: int, stage width. The block outputs `4 * filters` channels.
        strides: int, stride of the 3x3 convolution and of the shortcut.
            Defaults to 1.
        shortcut: str, "projection" or "zero_pad", as in `basic_block`.
            Defaults to "projection".
        name: str, prefix of every layer name. Defaults to "block".
        **options: block options, all off by default:
            preact (bool): pre-activation block of He et al. 2016b, with
                BatchNorm and ReLU before each convolution and no ReLU after
                the addition.
            groups (int) and width_per_group (int): ResNeXt grouped 3x3
                convolution (bottleneck only); the inner width is
                int(filters * width_per_group / 64) * groups, as in
                torchvision. Defaults 1 and 64.
            se_ratio (number or None): squeeze-and-excitation on the branch
                with this reduction ratio.
            drop_rate (float in [0, 1)): stochastic depth rate of this block.
            zero_init_last_gamma (bool): start the last BatchNorm scale of the
                branch at zero (post-activation blocks only).
            avg_down (bool): ResNet-D shortcut, average pooling then a 1x1
                projection with stride 1.
            stride_in_1x1 (bool): stride on the first 1x1 convolution as in
                the original paper and keras.applications (bottleneck only).
            conv_bias (bool): every convolution adds a bias, as
                keras.applications builds it; only weight conversion needs it.

    Returns:
        The output Keras tensor, with `4 * filters` channels.

    Raises:
        ValueError: if `shortcut` is not one of "projection" or "zero_pad".
    """
    options = _block_options(**options)
    inner = max(1, int(filters * options["width_per_group"] / config.BASE_WIDTH_PER_GROUP)) * options["groups"]
    first, middle = (strides, 1) if options["stride_in_1x1"] else (1, strides)
    convs = [
        (inner, 1, first, 1),
        (inner, 3, middle, options["groups"]),
        (filters * config.BOTTLENECK_EXPANSION, 1, 1, 1),
    ]
    return _residual_block(x, convs, strides, shortcut, name, options)


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


def stage(
    x, block, filters, blocks, strides=2, shortcut="projection", name="stage", *, drop_rates=None,
    stride_block="first", **options
):
    """Stack residual blocks; only one of them changes the shape.

    Args:
        x: Keras tensor, channels_last.
        block: "basic", "bottleneck", or a block builder with the signature
            of `basic_block`.
        filters: int, the `filters` argument of every block.
        blocks: int, number of blocks, at least 1.
        strides: int, stride of the block named by `stride_block`. Defaults
            to 2.
        shortcut: str, "projection" or "zero_pad". Defaults to "projection".
        name: str, stage prefix; blocks are named "{name}_block1",
            "{name}_block2", .... Defaults to "stage".
        drop_rates: sequence of `blocks` stochastic depth rates, or None for
            none. Defaults to None.
        stride_block: "first" (the papers, torchvision) or "last"
            (keras.applications' V2 models, whose last block then keeps the
            channels and subsamples its shortcut). Defaults to "first".
        **options: block options passed to every block; see
            `bottleneck_block`.

    Returns:
        The output Keras tensor.

    Raises:
        ValueError: if `block` is an unknown name, `blocks` is below 1 or
            `drop_rates` has another length.
    """
    if not callable(block):
        block = BLOCKS[config.check_choice("block", block, tuple(BLOCKS))]
    blocks = config.check_int("blocks", blocks, minimum=1)
    config.check_choice("stride_block", stride_block, config.STRIDE_BLOCKS)
    drop_rates = [0.0] * blocks if drop_rates is None else list(drop_rates)
    if len(drop_rates) != blocks:
        raise ValueError(f"`drop_rates` must have one rate per block ({blocks}); received {drop_rates!r}.")

    strided = 1 if stride_block == "first" else blocks
    for i in range(1, blocks + 1):
        block_shortcut = shortcut
        if stride_block == "last" and i == blocks and i > 1:
            # keras.applications subsamples this shortcut with a 1x1 max-pool,
            # which is what a zero-pad shortcut does when no channels are added.
            block_shortcut = "zero_pad"
        x = block(
            x,
            filters,
            strides=strides if i == strided else 1,
            shortcut=block_shortcut,
            name=f"{name}_block{i}",
            drop_rate=drop_rates[i - 1],
            **options,
        )
    return x
