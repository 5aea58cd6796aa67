"""Defaults with their sources, the depth tables, and argument validation.

Every other module reads its constants from here, so a value such as the
BatchNorm epsilon is written once, next to the reason for it.
"""

import dataclasses
import math
import numbers

# BatchNorm settings of torchvision's ResNet (torch.nn.BatchNorm2d defaults):
# eps=1e-5 and momentum=0.1. PyTorch's momentum weighs the new batch, Keras's
# weighs the running average, so torch's 0.1 is Keras's 0.9.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

# torchvision initialises convolutions with kaiming_normal_(mode="fan_out",
# nonlinearity="relu"): a normal distribution with variance 2 / fan_out.
CONV_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"},
}

FAMILIES = ("imagenet", "cifar")

# Residual blocks per stage for the ImageNet family. 18 to 152 are Table 1 of
# He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016); 200
# is from He et al., "Identity Mappings in Deep Residual Networks" (ECCV 2016).
IMAGENET_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
IMAGENET_STEM_FILTERS = 64
IMAGENET_STAGE_FILTERS = (64, 128, 256, 512)
# The stem divides the input by 4 (7x7/2 conv, 3x3/2 max-pool) and stages 2-4
# each by 2, so the last feature map is input_size / 32.
IMAGENET_TOTAL_STRIDE = 32

# CIFAR family, He et al. 2016, section 4.2: a 3x3 stem with 16 filters, three
# stages of n basic blocks with 16, 32 and 64 filters, depth 6n + 2.
CIFAR_STEM_FILTERS = 16
CIFAR_STAGE_FILTERS = (16, 32, 64)
CIFAR_DEPTHS_IN_PAPER = (20, 32, 44, 56, 110, 1202)
CIFAR_TOTAL_STRIDE = 4

BLOCK_TYPES = ("basic", "bottleneck")
# Output channels of a bottleneck block are 4 times its inner width
# (He et al. 2016, Table 1).
BOTTLENECK_EXPANSION = 4

SHORTCUTS = ("projection", "zero_pad")
POOLINGS = ("avg", "max", None)

# Default input sizes: the ImageNet crop used by the paper and the CIFAR image.
DEFAULT_INPUT_SHAPE = {"imagenet": (224, 224, 3), "cifar": (32, 32, 3)}


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A resolved network layout: what `build()` turns into layers."""

    family: str
    depth: int
    block_type: str
    blocks_per_stage: tuple
    stem_filters: int
    stage_filters: tuple
    shortcut: str
    total_stride: int


def check_int(name, value, minimum=None):
    """Return `value` if it is an int (not a bool) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer; received {value!r} of type {type(value).__name__}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; received {value!r}.")
    return int(value)


def check_choice(name, value, choices):
    """Return `value` if it is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; received {value!r}.")
    return value


def check_positive_number(name, value):
    """Return `value` as a float if it is a finite number above zero."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number; received {value!r} of type {type(value).__name__}.")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"`{name}` must be a finite number > 0; received {value!r}.")
    return float(value)


def describe_valid_depths():
    """Return the sentence listing the depths `build()` accepts."""
    imagenet = ", ".join(str(d) for d in IMAGENET_STAGES)
    cifar = ", ".join(str(d) for d in CIFAR_DEPTHS_IN_PAPER)
    return (
        f"family 'imagenet' accepts depths {imagenet}; family 'cifar' accepts any depth 6n + 2 "
        f"with n >= 1, such as {cifar}"
    )


def resolve_family(depth, family):
    """Return the family that `depth` builds when `family` is given or None.

    With `family=None` the ImageNet depths build the ImageNet network, so
    `build(depth=50)` is the familiar ResNet-50, and every other depth 6n + 2
    builds the CIFAR network. Depths 50 and 200 are 6n + 2 as well: pass
    `family="cifar"` for those CIFAR networks.
    """
    depth = check_int("depth", depth)
    if family is not None:
        check_choice("family", family, FAMILIES)
    valid_imagenet = depth in IMAGENET_STAGES
    valid_cifar = depth >= 8 and (depth - 2) % 6 == 0

    if family is None:
        if valid_imagenet:
            return "imagenet"
        if valid_cifar:
            return "cifar"
    elif family == "imagenet" and valid_imagenet:
        return family
    elif family == "cifar" and valid_cifar:
        return family
    where = "" if family is None else f" for family {family!r}"
    raise ValueError(f"Invalid depth {depth!r}{where}: {describe_valid_depths()}.")


def resolve_architecture(depth, family=None, width=1.0, shortcut=None):
    """Validate the layout arguments of `build()` and return an `Architecture`."""
    family = resolve_family(depth, family)
    width = check_positive_number("width", width)
    if shortcut is not None:
        check_choice("shortcut", shortcut, SHORTCUTS)

    if family == "imagenet":
        block_type, blocks = IMAGENET_STAGES[depth]
        stem, stages, stride = IMAGENET_STEM_FILTERS, IMAGENET_STAGE_FILTERS, IMAGENET_TOTAL_STRIDE
        # torchvision projects with a strided 1x1 conv whenever the shape changes.
        default_shortcut = "projection"
    else:
        n = (depth - 2) // 6
        block_type, blocks = "basic", (n, n, n)
        stem, stages, stride = CIFAR_STEM_FILTERS, CIFAR_STAGE_FILTERS, CIFAR_TOTAL_STRIDE
        # Option A of He et al. 2016, section 4.2: identity shortcuts that
        # subsample and pad the new channels with zeros, so no parameters.
        default_shortcut = "zero_pad"

    return Architecture(
        family=family,
        depth=depth,
        block_type=block_type,
        blocks_per_stage=blocks,
        stem_filters=scale_filters(stem, width),
        stage_filters=tuple(scale_filters(f, width) for f in stages),
        shortcut=shortcut or default_shortcut,
        total_stride=stride,
    )


def scale_filters(filters, width):
    """Scale a filter count by the width multiplier, keeping at least one filter."""
    return max(1, int(round(filters * width)))


def check_in_range(name, value, low, high, accepted):
    """Return `value` as a float if it is a number with low <= value < high.

    `accepted` describes the range in the error message, such as
    "a number in [0, 1)".
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be {accepted}; received {value!r} of type {type(value).__name__}.")
    if not (math.isfinite(value) and low <= value < high):
        raise ValueError(f"`{name}` must be {accepted}; received {value!r}.")
    return float(value)
