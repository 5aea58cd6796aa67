"""The named variants: each entry is a set of `build()` arguments.

Names follow timm and torchvision where they have the network, so
`build("resnext50_32x4d")` is the network that torchvision calls
resnext50_32x4d. Adding a variant is one line here, never a model function.
"""

from keras_resnet import config

_IMAGENET_DEPTHS = tuple(config.IMAGENET_STAGES)
_BOTTLENECK_DEPTHS = tuple(d for d, (block, _) in config.IMAGENET_STAGES.items() if block == "bottleneck")

VARIANTS = {
    # ResNet v1.5 as torchvision builds it (He et al. 2016 with the stride of
    # a bottleneck on its 3x3, which "Bag of Tricks" calls ResNet-B).
    **{f"resnet{d}": {"depth": d, "family": "imagenet"} for d in _IMAGENET_DEPTHS},
    # He et al. 2016, section 4.2.
    **{f"resnet{d}": {"depth": d, "family": "cifar"} for d in config.CIFAR_DEPTHS_IN_PAPER},
    # Pre-activation networks of He et al. 2016b, named as timm names them.
    **{f"resnetv2_{d}": {"depth": d, "family": "imagenet", "preact": True} for d in _IMAGENET_DEPTHS},
    "preresnet110": {"depth": 110, "family": "cifar", "preact": True},
    **{
        f"preresnet{d}": {"depth": d, "family": "cifar", "block": "bottleneck", "preact": True}
        for d in config.CIFAR_BOTTLENECK_DEPTHS_IN_PAPER
    },
    # He et al. 2019 ("Bag of Tricks"): ResNet-C has the deep stem, ResNet-D
    # adds the average-pool shortcut; timm's names.
    "resnet50c": {"depth": 50, "family": "imagenet", "stem": "deep"},
    **{f"resnet{d}d": {"depth": d, "family": "imagenet", "stem": "deep", "avg_down": True} for d in _IMAGENET_DEPTHS},
    # Xie et al., "Aggregated Residual Transformations" (CVPR 2017);
    # torchvision's names.
    "resnext50_32x4d": {"depth": 50, "family": "imagenet", "groups": 32, "width_per_group": 4},
    "resnext101_32x8d": {"depth": 101, "family": "imagenet", "groups": 32, "width_per_group": 8},
    "resnext101_64x4d": {"depth": 101, "family": "imagenet", "groups": 64, "width_per_group": 4},
    # Zagoruyko & Komodakis 2016: torchvision's ImageNet wide networks double
    # the bottleneck's inner width; the CIFAR ones are WRN-depth-k.
    "wide_resnet50_2": {"depth": 50, "family": "imagenet", "width_per_group": 128},
    "wide_resnet101_2": {"depth": 101, "family": "imagenet", "width_per_group": 128},
    "wrn16_8": {"depth": 16, "family": "wrn", "widen_factor": 8},
    "wrn28_10": {"depth": 28, "family": "wrn", "widen_factor": 10},
    "wrn40_4": {"depth": 40, "family": "wrn", "widen_factor": 4},
    # Hu et al. 2018; timm's names. Only bottleneck depths, where timm's
    # rounding of the squeeze width to a multiple of 8 changes nothing.
    **{
        f"seresnet{d}": {"depth": d, "family": "imagenet", "se_ratio": config.DEFAULT_SE_RATIO}
        for d in _BOTTLENECK_DEPTHS
        if d <= 152
    },
}


def available_models():
    """Return the names that `build()` accepts as `variant`, grouped by family and depth.

    Returns:
        A list of str, such as ["resnet18", ..., "resnet20", ...].
    """
    return sorted(VARIANTS, key=lambda name: (VARIANTS[name]["family"], VARIANTS[name]["depth"], name))
