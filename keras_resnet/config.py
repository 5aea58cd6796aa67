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

# "wrn" is the CIFAR wide residual network of Zagoruyko & Komodakis, "Wide
# Residual Networks" (BMVC 2016).
FAMILIES = ("imagenet", "cifar", "wrn")

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
# He et al., "Identity Mappings in Deep Residual Networks" (ECCV 2016),
# section 4: CIFAR networks of bottleneck blocks have depth 9n + 2, such as
# ResNet-164 and ResNet-1001.
CIFAR_BOTTLENECK_DEPTHS_IN_PAPER = (164, 1001)

# Zagoruyko & Komodakis 2016, Table 1: WRN-d-k has a 3x3 stem with 16
# filters and three stages of n pre-activation basic blocks with 16k, 32k and
# 64k filters; its depth d = 6n + 4 counts the stem, the classifier and the
# two projection shortcuts.
WRN_STEM_FILTERS = 16
WRN_STAGE_FILTERS = (16, 32, 64)

BLOCK_TYPES = ("basic", "bottleneck")
# Output channels of a bottleneck block are 4 times its inner width
# (He et al. 2016, Table 1).
BOTTLENECK_EXPANSION = 4

SHORTCUTS = ("projection", "zero_pad")
POOLINGS = ("avg", "max", None)
STEMS = ("standard", "deep")
# The block of a stage that carries the stride: "first" as in the papers and
# torchvision, "last" as keras.applications' ResNet50V2 family does.
STRIDE_BLOCKS = ("first", "last")

# Deep stem of He et al., "Bag of Tricks for Image Classification with
# Convolutional Neural Networks" (CVPR 2019), ResNet-C: three 3x3
# convolutions with 32, 32 and then the stem's 64 filters replace the 7x7.
DEEP_STEM_FILTERS = 32

# torchvision's Bottleneck has an inner width of
# int(filters * width_per_group / 64) * groups, so 64 leaves it unchanged.
BASE_WIDTH_PER_GROUP = 64

# Hu et al., "Squeeze-and-Excitation Networks" (CVPR 2018) use a reduction
# ratio of 16 in SE-ResNet.
DEFAULT_SE_RATIO = 16

# Default input sizes: the ImageNet crop used by the paper and the CIFAR image.
DEFAULT_INPUT_SHAPE = {"imagenet": (224, 224, 3), "cifar": (32, 32, 3), "wrn": (32, 32, 3)}


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
    preact: bool = False
    stem: str = "standard"
    avg_down: bool = False
    stride_in_1x1: bool = False
    groups: int = 1
    width_per_group: int = BASE_WIDTH_PER_GROUP
    se_ratio: float = None
    drop_path_rate: float = 0.0
    zero_init_last_gamma: bool = False
    conv_bias: bool = False
    stride_block: str = "first"

    def block_options(self):
        """Return the keyword arguments that every block builder takes."""
        return {
            "preact": self.preact,
            "avg_down": self.avg_down,
            "stride_in_1x1": self.stride_in_1x1,
            "groups": self.groups,
            "width_per_group": self.width_per_group,
            "se_ratio": self.se_ratio,
            "zero_init_last_gamma": self.zero_init_last_gamma,
            "conv_bias": self.conv_bias,
        }


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
    bottleneck = ", ".join(str(d) for d in CIFAR_BOTTLENECK_DEPTHS_IN_PAPER)
    return (
        f"family 'imagenet' accepts depths {imagenet}; family 'cifar' accepts any depth 6n + 2 "
        f"with n >= 1, such as {cifar}, or 9n + 2 with block='bottleneck', such as {bottleneck}; "
        "family 'wrn' accepts any depth 6n + 4, such as 16, 28 and 40"
    )


def _cifar_blocks(depth, family, block):
    """Return the blocks per stage of a CIFAR-style depth, or None if invalid."""
    if family == "wrn":
        n, remainder = divmod(depth - 4, 6)
    elif block == "bottleneck":
        n, remainder = divmod(depth - 2, 9)
    else:
        n, remainder = divmod(depth - 2, 6)
    return n if n >= 1 and remainder == 0 else None


def resolve_family(depth, family, block=None):
    """Return the family that `depth` builds when `family` is given or None.

    With `family=None` the ImageNet depths build the ImageNet network, so
    `build(depth=50)` is the familiar ResNet-50, and every other depth 6n + 2
    builds the CIFAR network, or 9n + 2 with `block="bottleneck"`. Depths 50
    and 200 are 6n + 2 as well: pass `family="cifar"` for those CIFAR
    networks. The "wrn" family is never inferred.
    """
    depth = check_int("depth", depth)
    if family is not None:
        check_choice("family", family, FAMILIES)
    if block is not None:
        check_choice("block", block, BLOCK_TYPES)
    valid_imagenet = depth in IMAGENET_STAGES and block in (None, IMAGENET_STAGES[depth][0])

    if family is None:
        if valid_imagenet:
            return "imagenet"
        if _cifar_blocks(depth, "cifar", block):
            return "cifar"
    elif family == "imagenet" and valid_imagenet:
        return family
    elif family in ("cifar", "wrn") and _cifar_blocks(depth, family, block):
        return family
    where = "" if family is None else f" for family {family!r}"
    if block is not None:
        where += f" with block={block!r}"
    raise ValueError(f"Invalid depth {depth!r}{where}: {describe_valid_depths()}.")


def resolve_architecture(depth, family=None, width=1.0, shortcut=None, **options):
    """Validate the layout arguments of `build()` and return an `Architecture`.

    `options` are the block and stem options of `build()` (`block`,
    `widen_factor`, `preact`, `stem`, ...); None or a missing key selects the
    family's default.
    """
    options = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(options) - set(_OPTION_CHECKS))
    if unknown:
        raise TypeError(f"Unknown architecture options {unknown}; accepted: {sorted(_OPTION_CHECKS)}.")
    options = {key: _OPTION_CHECKS[key](key, value) for key, value in options.items()}
    family = resolve_family(depth, family, options.get("block"))
    width = check_positive_number("width", width)
    if shortcut is not None:
        check_choice("shortcut", shortcut, SHORTCUTS)

    if family == "imagenet":
        block_type, blocks = IMAGENET_STAGES[depth]
        stem, stages, stride = IMAGENET_STEM_FILTERS, IMAGENET_STAGE_FILTERS, IMAGENET_TOTAL_STRIDE
        # torchvision projects with a strided 1x1 conv whenever the shape changes.
        default_shortcut = "projection"
    elif family == "wrn":
        n = _cifar_blocks(depth, family, "basic")
        block_type, blocks = "basic", (n, n, n)
        k = options.pop("widen_factor", 1.0)
        stem, stages, stride = WRN_STEM_FILTERS, tuple(f * k for f in WRN_STAGE_FILTERS), CIFAR_TOTAL_STRIDE
        default_shortcut = "projection"
        if options.get("preact") is False:
            raise ValueError("Family 'wrn' is built of pre-activation blocks; received preact=False.")
        options["preact"] = True
    else:
        block_type = options.get("block", "basic")
        n = _cifar_blocks(depth, family, block_type)
        blocks = (n, n, n)
        stem, stages, stride = CIFAR_STEM_FILTERS, CIFAR_STAGE_FILTERS, CIFAR_TOTAL_STRIDE
        # Option A of He et al. 2016, section 4.2: identity shortcuts that
        # subsample and pad the new channels with zeros, so no parameters.
        # The bottleneck networks of He et al. 2016b project instead.
        default_shortcut = "zero_pad" if block_type == "basic" else "projection"
    options.pop("block", None)
    if "widen_factor" in options:
        raise ValueError(
            f"`widen_factor` applies to family 'wrn'; received widen_factor={options['widen_factor']!r} "
            f"for family {family!r}. Use `width_per_group` for the wide ImageNet networks."
        )
    _check_option_combinations(family, block_type, options)
    shortcut = shortcut or default_shortcut
    if options.get("avg_down") and shortcut != "projection":
        raise ValueError(
            f"`avg_down=True` pools before a projection shortcut, but the shortcut is {shortcut!r}; "
            "pass shortcut='projection' as well."
        )

    return Architecture(
        family=family,
        depth=depth,
        block_type=block_type,
        blocks_per_stage=blocks,
        stem_filters=scale_filters(stem, width),
        stage_filters=tuple(scale_filters(f, width) for f in stages),
        shortcut=shortcut,
        total_stride=stride,
        **options,
    )


def _check_option_combinations(family, block_type, options):
    if block_type == "basic":
        for key, default in (("groups", 1), ("width_per_group", BASE_WIDTH_PER_GROUP), ("stride_in_1x1", False)):
            if options.get(key, default) != default:
                raise ValueError(
                    f"`{key}` applies to bottleneck blocks; received {key}={options[key]!r} for a network of "
                    "basic blocks. Pick a bottleneck depth such as 50."
                )
    if options.get("preact") and options.get("zero_init_last_gamma"):
        raise ValueError(
            "`zero_init_last_gamma=True` needs post-activation blocks, whose residual branch ends in a "
            "BatchNorm; received preact=True."
        )
    if family != "imagenet" and options.get("stem", "standard") != "standard":
        raise ValueError(f"`stem={options['stem']!r}` applies to family 'imagenet'; received family {family!r}.")


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False; received {value!r}.")
    return value


_OPTION_CHECKS = {
    "block": lambda name, value: check_choice(name, value, BLOCK_TYPES),
    "widen_factor": check_positive_number,
    "preact": _check_bool,
    "stem": lambda name, value: check_choice(name, value, STEMS),
    "avg_down": _check_bool,
    "stride_in_1x1": _check_bool,
    "groups": lambda name, value: check_int(name, value, minimum=1),
    "width_per_group": lambda name, value: check_int(name, value, minimum=1),
    "se_ratio": check_positive_number,
    "drop_path_rate": lambda name, value: check_in_range(name, value, 0.0, 1.0, "a number in [0, 1)"),
    "zero_init_last_gamma": _check_bool,
    "conv_bias": _check_bool,
    "stride_block": lambda name, value: check_choice(name, value, STRIDE_BLOCKS),
}


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
