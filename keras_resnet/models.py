"""`build()`: residual networks assembled from the block builders.

The named variants are data: each entry of `registry.VARIANTS` is a set of
`build()` arguments, so adding a variant never means copying a model
function.
"""

import math

import keras
import numpy as np

from keras_resnet import blocks
from keras_resnet import config
from keras_resnet import layers
from keras_resnet import saving
from keras_resnet import stems
from keras_resnet.registry import VARIANTS
from keras_resnet.registry import available_models

DEFAULT_NUM_CLASSES = {"imagenet": 1000, "cifar": 10, "wrn": 10}
# Downsampling of the stems, which sets the stride of each stage's output.
STEM_STRIDE = {"imagenet": 4, "cifar": 1, "wrn": 1}

# The keyword-only options of `build()` that select the architecture; a
# variant's entry may set any of them.
ARCHITECTURE_OPTIONS = (
    "block", "widen_factor", "preact", "stem", "avg_down", "stride_in_1x1", "groups", "width_per_group",
    "se_ratio", "drop_path_rate", "zero_init_last_gamma", "conv_bias", "stride_block",
)


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
    feature_pyramid=False,
    **options,
):
    """Build a ResNet as a `keras.Model`.

    Three families are available:

    | family     | depths                        | blocks     | stage widths        |
    |------------|-------------------------------|------------|---------------------|
    | "imagenet" | 18, 34, 50, 101, 152, 200     | basic (18, 34), bottleneck | 64, 128, 256, 512 |
    | "cifar"    | 6n + 2: 20, 32, 44, 56, 110, 1202, ... | basic | 16, 32, 64 |
    | "cifar"    | 9n + 2: 164, 1001, ... (`block="bottleneck"`) | bottleneck | 16, 32, 64 |
    | "wrn"      | 6n + 4: 16, 28, 40, ...       | pre-activation basic | 16k, 32k, 64k |

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
        feature_pyramid: bool, build a backbone whose output is a dict of
            every stage's output, keyed "C{k}" for stride 2**k: "C2" to "C5"
            for the ImageNet family, "C0" to "C2" for CIFAR. No head is built,
            so `include_top` and `classifier_activation` are not used;
            `pooling` must be None. With `preact=True` the last entry is taken
            after the final BatchNorm and ReLU. Defaults to False.
        **options: keyword-only architecture options, None selecting the
            default shown:
            block: "basic" or "bottleneck", for family "cifar" only.
                Defaults to "basic".
            widen_factor: number > 0, the k of WRN-d-k, for family "wrn".
                Defaults to 1.
            preact: bool, pre-activation blocks and a final BatchNorm and
                ReLU (He et al. 2016b). Defaults to False; always True for
                "wrn".
            stem: "standard" or "deep" (ResNet-C, ImageNet family).
                Defaults to "standard".
            avg_down: bool, average-pool shortcuts (ResNet-D). Defaults to
                False.
            stride_in_1x1: bool, stride on a bottleneck's first 1x1
                convolution (ResNet v1, keras.applications). Defaults to
                False (v1.5).
            groups, width_per_group: int, ResNeXt cardinality and width of
                each group. Defaults to 1 and 64.
            se_ratio: number or None, squeeze-and-excitation reduction ratio.
                Defaults to None (no SE).
            drop_path_rate: float in [0, 1), stochastic depth rate of the
                last block; block l of L has rate * l / L (Huang et al.
                2016). Defaults to 0.
            zero_init_last_gamma: bool, start the last BatchNorm scale of
                each residual branch at zero. Defaults to False, as
                torchvision's `zero_init_residual`.
            conv_bias: bool, a bias on every convolution, as
                keras.applications builds it. Defaults to False.
            stride_block: "first" or "last", the block of a stage that
                downsamples; "last" is the layout of keras.applications'
                V2 models. Defaults to "first".

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
    unknown = sorted(set(options) - set(ARCHITECTURE_OPTIONS))
    if unknown:
        raise TypeError(f"build() got unknown arguments {unknown}; architecture options: {list(ARCHITECTURE_OPTIONS)}.")
    arguments = _merge_variant(variant, depth=depth, family=family, **options)
    arch = config.resolve_architecture(arguments.pop("depth"), arguments.pop("family"), width, shortcut, **arguments)
    feature_pyramid = _check_feature_pyramid(feature_pyramid, pooling, arch)
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

    if arch.family == "imagenet":
        x = stems.imagenet_stem(
            x, arch.stem_filters, deep=arch.stem == "deep", preact=arch.preact, use_bias=arch.conv_bias
        )
    else:
        x = stems.cifar_stem(x, arch.stem_filters, preact=arch.preact, use_bias=arch.conv_bias)

    features = {}
    stride = STEM_STRIDE[arch.family]
    drop_rates = _drop_path_rates(arch)
    stages = len(arch.stage_filters)
    for index, (filters, count) in enumerate(zip(arch.stage_filters, arch.blocks_per_stage), start=1):
        # The first stage keeps the stem's size and every later one halves it
        # (He et al. 2016, Table 1). With stride_block="last" each stage
        # instead halves at its end, except the last stage.
        if arch.stride_block == "first":
            strides = 1 if index == 1 else 2
        else:
            strides = 2 if index < stages else 1
        x = blocks.stage(
            x,
            arch.block_type,
            filters,
            count,
            strides=strides,
            shortcut=arch.shortcut,
            name=f"stage{index}",
            drop_rates=drop_rates[:count],
            stride_block=arch.stride_block,
            **arch.block_options(),
        )
        drop_rates = drop_rates[count:]
        stride *= strides
        features[f"C{int(math.log2(stride))}"] = x
    if arch.preact:
        x = blocks.batch_norm(x, name="post")
        features[f"C{int(math.log2(stride))}"] = x

    x = features if feature_pyramid else _head(x, include_top, pooling, num_classes, classifier_activation)
    if class_names is not None:
        if not include_top or feature_pyramid:
            raise ValueError(
                "`class_names` needs `include_top=True` and no `feature_pyramid`: without the classifier there is "
                "nothing to label."
            )
        x = layers.ClassLabels(class_names, name="head_labels", dtype=_head_dtype())(x)
    # A block adds at most about 17 layers to the longest path (a bottleneck
    # with squeeze-and-excitation and drop path).
    saving.allow_graph_depth(17 * sum(arch.blocks_per_stage))
    return keras.Model(inputs, x, name=name or default_name(variant, arch, width))


def _drop_path_rates(arch):
    # Linear decay rule of Huang et al. 2016: block l of L drops with
    # probability rate * l / L, so the last block has the full rate.
    total = sum(arch.blocks_per_stage)
    return [arch.drop_path_rate * block / total for block in range(1, total + 1)]


def _check_feature_pyramid(feature_pyramid, pooling, arch):
    if not isinstance(feature_pyramid, (bool, np.bool_)):
        raise TypeError(f"`feature_pyramid` must be True or False; received {feature_pyramid!r}.")
    if feature_pyramid and pooling is not None:
        raise ValueError(f"`feature_pyramid=True` returns feature maps, so `pooling` must be None; received {pooling!r}.")
    if feature_pyramid and arch.stride_block != "first":
        raise ValueError(
            "`feature_pyramid=True` needs stride_block='first', where each stage output has its own stride; "
            f"received stride_block={arch.stride_block!r}."
        )
    return bool(feature_pyramid)


def default_name(variant, arch, width):
    """Return the name `build` gives a model: the variant's, or one made from the depth and family."""
    if variant is not None:
        return variant if width == 1.0 else f"{variant}_w{width:g}"
    if arch.family == "wrn":
        return f"wrn{arch.depth}" if width == 1.0 else f"wrn{arch.depth}_w{width:g}"
    # Only the CIFAR bottleneck depths need the block to pick the family.
    block = "bottleneck" if arch.family == "cifar" and arch.block_type == "bottleneck" else None
    return model_name(arch.depth, arch.family, width, block=block)


def resolve(variant=None, depth=None, family=None, width=1.0):
    """Return the `config.Architecture` that `build` makes of these arguments.

    Raises:
        ValueError, TypeError: as `build` does for them.
    """
    arguments = _merge_variant(variant, depth=depth, family=family)
    return config.resolve_architecture(arguments.pop("depth"), arguments.pop("family"), width, **arguments)


def _merge_variant(variant, **arguments):
    arguments = {key: value for key, value in arguments.items() if key in ("depth", "family") or value is not None}
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
        if value is None:
            continue
        if key in merged and value != merged[key]:
            raise ValueError(f"Variant {variant!r} has {key}={merged[key]!r}, which conflicts with {key}={value!r}.")
        merged[key] = value
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


def _head_dtype():
    # Under a mixed dtype policy the classifier computes in float32, as the
    # Keras mixed-precision guide advises: a bfloat16 softmax keeps about
    # three significant digits.
    return "float32" if keras.config.dtype_policy().name.startswith("mixed") else None


def _head(x, include_top, pooling, num_classes, classifier_activation):
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
        return keras.layers.Dense(
            num_classes, activation=classifier_activation, name="head_dense", dtype=_head_dtype()
        )(x)
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


def model_name(depth, family=None, width=1.0, block=None):
    """Return the default model name, such as "resnet50" or "cifar_resnet50_w2".

    The family is part of the name only where the depth alone would pick the
    other family.
    """
    family = config.resolve_family(depth, family, block)
    name = f"resnet{depth}"
    if config.resolve_family(depth, None, block) != family:
        name = f"{family}_{name}"
    if width != 1.0:
        name += f"_w{width:g}"
    return name
