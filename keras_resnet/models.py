"""`build()`: residual networks assembled from the block builders.

The named variants are data: each entry of `VARIANTS` is a set of `build()`
arguments, so adding a variant never means copying a model function.
"""

import sys

import keras
import numpy as np

from keras_resnet import blocks
from keras_resnet import config
from keras_resnet import layers

VARIANTS = {
    **{f"resnet{depth}": {"depth": depth, "family": "imagenet"} for depth in config.IMAGENET_STAGES},
    **{f"resnet{depth}": {"depth": depth, "family": "cifar"} for depth in config.CIFAR_DEPTHS_IN_PAPER},
}

DEFAULT_NUM_CLASSES = {"imagenet": 1000, "cifar": 10}


def available_models():
    """Return the sorted names that `build()` accepts as `variant`."""
    return sorted(VARIANTS, key=lambda name: (VARIANTS[name]["family"], VARIANTS[name]["depth"]))


def build(
    variant=None,
    *,
    depth=None,
    family=None,
    width=1.0,
    num_classes=None,
    input_shape=None,
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    shortcut=None,
    input_normalization=None,
    class_names=None,
    name=None,
):
    """Build a ResNet as a `keras.Model`.

    Two families are available:

    | family     | depths                        | blocks     | stage widths        |
    |------------|-------------------------------|------------|---------------------|
    | "imagenet" | 18, 34, 50, 101, 152, 200     | basic (18, 34), bottleneck | 64, 128, 256, 512 |
    | "cifar"    | 6n + 2: 20, 32, 44, 56, 110, 1202, ... | basic | 16, 32, 64 |

    The ImageNet family matches torchvision's `resnet18` to `resnet152`
    ("v1.5": the stride of a bottleneck block sits on its 3x3 convolution) and
    has exactly their parameter counts. The CIFAR family is the network of He
    et al. 2016, section 4.2, with zero-padding identity shortcuts (option A).

    With `family=None` the family follows from the depth: the ImageNet depths
    build the ImageNet network, so `build(depth=50)` is the familiar
    ResNet-50, and any other depth 6n + 2 builds the CIFAR network. Depths 50
    and 200 are also 6n + 2: pass `family="cifar"` for those CIFAR networks.

    Args:
        variant: str or None, a name from `available_models()` such as
            "resnet50" or "resnet20". Defaults to None (give `depth`).
        depth: int, number of weighted layers. Required unless `variant` is
            given.
        family: "imagenet", "cifar" or None (inferred from the depth).
            Defaults to None.
        width: float > 0, multiplies the filter count of every convolution.
            Defaults to 1.0.
        num_classes: int >= 2, classifier outputs. Defaults to 1000 for the
            ImageNet family and 10 for the CIFAR family.
        input_shape: tuple `(height, width, channels)`. Height and width may be
            None for a size-agnostic model and must otherwise be at least the
            network's total stride (32 for ImageNet, 4 for CIFAR). Defaults to
            `(224, 224, 3)` for ImageNet and `(32, 32, 3)` for CIFAR.
        include_top: bool, whether to end with global average pooling and the
            dense classifier. Defaults to True.
        pooling: "avg", "max" or None: the global pooling applied when
            `include_top=False`; None returns the last feature map.
        classifier_activation: str or None, activation of the classifier, for
            example "softmax" (the default) or None for logits.
        shortcut: "projection", "zero_pad" or None: what replaces the identity
            shortcut where a block changes the shape. Defaults to None, which
            means "projection" for ImageNet (as torchvision) and "zero_pad" for
            CIFAR (as the paper).
        input_normalization: None or a pair `(mean, std)` of per-channel
            sequences. When given, a `keras.layers.Normalization` layer named
            "input_normalize" first computes `(x - mean) / std`, so the model
            takes raw pixel values. Defaults to None.
        class_names: None or a sequence of `num_classes` distinct strings,
            the label of each classifier output. When given, an identity
            `ClassLabels` layer named "head_labels" ends the model and keeps
            the names in the saved file, where `class_names()`, export and
            prediction find them. Needs `include_top=True`. Defaults to None.
        name: str, model name. Defaults to the variant name, e.g. "resnet50".

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: for a depth outside the family, a width <= 0, fewer than
            two classes, an input smaller than the total stride, or an
            unknown option value. The message names the received value and
            the accepted ones.
        TypeError: for an argument of the wrong type.

    Example:

    >>> import keras_resnet
    >>> model = keras_resnet.build(depth=50)
    >>> model.count_params()
    25610152
    """
    arguments = _merge_variant(variant, depth=depth, family=family)
    arch = config.resolve_architecture(arguments["depth"], arguments["family"], width, shortcut)
    num_classes = _check_num_classes(num_classes, arch.family, include_top)
    input_shape = _check_input_shape(input_shape, arch)
    config.check_choice("pooling", pooling, config.POOLINGS)
    if not isinstance(include_top, (bool, np.bool_)):
        raise TypeError(f"`include_top` must be True or False; received {include_top!r}.")
    include_top = bool(include_top)
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "keras_resnet builds channels_last models, but keras.config.image_data_format() is "
            f"{keras.config.image_data_format()!r}; call keras.config.set_image_data_format('channels_last')."
        )

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if input_normalization is not None:
        x = _normalization_layer(input_normalization, input_shape[-1])(x)

    stem = blocks.imagenet_stem if arch.family == "imagenet" else blocks.cifar_stem
    x = stem(x, arch.stem_filters)
    for index, (filters, count) in enumerate(zip(arch.stage_filters, arch.blocks_per_stage), start=1):
        x = blocks.stage(
            x,
            arch.block_type,
            filters,
            count,
            # The ImageNet stem has already downsampled by 4, so stage 1 keeps
            # the size; every later stage halves it (He et al. 2016, Table 1).
            strides=1 if index == 1 else 2,
            shortcut=arch.shortcut,
            name=f"stage{index}",
        )

    x = _head(x, include_top, pooling, num_classes, classifier_activation)
    if class_names is not None:
        if not include_top:
            raise ValueError("`class_names` needs `include_top=True`: without the classifier there is nothing to label.")
        x = layers.ClassLabels(class_names, name="head_labels")(x)
    _allow_graph_depth(sum(arch.blocks_per_stage))
    return keras.Model(inputs, x, name=name or model_name(arch.depth, arch.family, width))


def _allow_graph_depth(num_blocks):
    # Keras walks the functional graph recursively, about 10 frames per
    # residual block, and stops at Python's default limit of 1000 frames
    # before the 600 blocks of CIFAR ResNet-1202. The limit is only raised,
    # never lowered, because loading the model later walks the graph again.
    needed = 1000 + 20 * num_blocks
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


def _merge_variant(variant, **arguments):
    if variant is None:
        if arguments["depth"] is None:
            raise ValueError(
                f"Pass `depth` or a `variant` name; received neither. Variants: {', '.join(available_models())}."
            )
        return arguments
    if not isinstance(variant, str):
        raise TypeError(f"`variant` must be a model name such as 'resnet50'; received {variant!r}.")
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; available: {', '.join(available_models())}.")

    merged = dict(VARIANTS[variant])
    for key, value in arguments.items():
        if value is not None and value != merged[key]:
            raise ValueError(f"Variant {variant!r} has {key}={merged[key]!r}, which conflicts with {key}={value!r}.")
    return merged


def _check_num_classes(num_classes, family, include_top):
    if num_classes is None:
        return DEFAULT_NUM_CLASSES[family]
    num_classes = config.check_int("num_classes", num_classes)
    if include_top and num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2; received {num_classes!r}.")
    return num_classes


def _check_input_shape(input_shape, arch):
    if input_shape is None:
        return config.DEFAULT_INPUT_SHAPE[arch.family]
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(f"`input_shape` must be a tuple (height, width, channels); received {input_shape!r}.")

    height, width, channels = input_shape
    config.check_int("input_shape channels", channels, minimum=1)
    for size in (height, width):
        if size is None:
            continue
        config.check_int("input_shape height and width", size)
        if size < arch.total_stride:
            raise ValueError(
                f"`input_shape` {tuple(input_shape)} is too small for the {arch.family} family: height and "
                f"width must be at least {arch.total_stride} pixels (the network's total stride), or None."
            )
    return tuple(input_shape)


def _normalization_layer(input_normalization, channels):
    try:
        mean, std = (np.asarray(v, dtype="float32").reshape(-1) for v in input_normalization)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`input_normalization` must be a pair (mean, std) of per-channel numbers; "
            f"received {input_normalization!r}."
        ) from error
    valid = mean.shape == (channels,) and std.shape == (channels,)
    if not (valid and np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
        raise ValueError(
            f"`input_normalization` must hold {channels} finite means and {channels} finite positive "
            "standard deviations; "
            f"received mean={mean.tolist()}, std={std.tolist()}."
        )
    return keras.layers.Normalization(mean=mean.tolist(), variance=(std**2).tolist(), name="input_normalize")


def _head(x, include_top, pooling, num_classes, classifier_activation):
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
        return keras.layers.Dense(num_classes, activation=classifier_activation, name="head_dense")(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="head_pool")(x)
    return x


def class_names(model):
    """Return the class names stored in `model`, or None if it has none.

    The names are those given to `build(class_names=...)`; `keras-resnet
    train` stores the names of the data set's classes.

    Example:

    >>> model = keras_resnet.build(depth=20, num_classes=2, class_names=["cat", "dog"])
    >>> keras_resnet.class_names(model)
    ['cat', 'dog']
    """
    for layer in model.layers:
        if isinstance(layer, layers.ClassLabels):
            return list(layer.class_names)
    return None


def model_name(depth, family=None, width=1.0):
    """Return the default model name, such as "resnet50" or "cifar_resnet50_w2".

    The family is part of the name only where the depth alone would pick the
    other family.
    """
    family = config.resolve_family(depth, family)
    name = f"resnet{depth}"
    if config.resolve_family(depth, None) != family:
        name = f"{family}_{name}"
    if width != 1.0:
        name += f"_w{width:g}"
    return name
