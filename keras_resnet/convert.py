"""Weight converters: torchvision state dicts and keras.applications models.

`from_torchvision` reads a torchvision ResNet, ResNeXt or wide ResNet state
dict (a `.pth` file or a dict of tensors) into the matching v1.5 network of
this package. `from_keras_applications` copies a keras.applications
ResNet50/101/152 or ResNet50V2/101V2/152V2 into the network of this package
with the same layout. Both build the target with `build()`, so the result is
an ordinary keras_resnet model whose layer names follow the package's scheme.

Two conventions differ between the sources and need no conversion. PyTorch's
BatchNorm momentum 0.1 weighs the new batch and equals Keras's 0.9, and it
only matters in training. Strided convolutions pad symmetrically here, as in
PyTorch, so torchvision weights see the same pixels.
"""

import logging
import pathlib
import re

import numpy as np

from keras_resnet import config
from keras_resnet import models
from keras_resnet import saving
from keras_resnet.registry import VARIANTS

logger = logging.getLogger(__name__)

# keras.applications names the stages conv2 to conv5, and this package names them stage1 to stage4.
_KERAS_STAGE_OFFSET = 1
# Layer name suffixes of keras.applications' blocks and their names here.
_KERAS_BLOCK_PARTS = {"0_conv": "shortcut_conv", "0_bn": "shortcut_bn", "preact_bn": "preact_bn"}
_KERAS_BLOCK_PARTS.update({f"{k}_{kind}": f"{kind}{k}" for k in (1, 2, 3) for kind in ("conv", "bn")})


def from_torchvision(state_dict, **build_kwargs):
    """Build the network of a torchvision ResNet state dict and load its weights.

    Accepts the state dicts of torchvision's resnet18 to resnet152,
    resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet50_2 and
    wide_resnet101_2 (and any other depth, groups or width per group that
    torchvision's `ResNet` class builds). The depth, groups, width per group
    and number of classes are read from the tensor shapes.

    Args:
        state_dict: path of a `.pth` file written by `torch.save`, or a
            mapping of parameter names to tensors or NumPy arrays.
        **build_kwargs: further `build()` arguments, such as `input_shape` or
            `classifier_activation=None` for logits as torchvision returns.

    Returns:
        A `keras.Model` named after the torchvision model, such as
        "resnext50_32x4d", whose outputs match torchvision's model in eval
        mode to 1e-4 (tested at 64x64 inputs).

    Raises:
        ValueError: if the state dict is not a torchvision ResNet, or a
            tensor has an unexpected shape.
        TypeError: if `state_dict` is neither a path nor a mapping.
    """
    state = _read_state_dict(state_dict)
    arguments = _torchvision_architecture(state)
    for key in arguments:
        if key in build_kwargs:
            raise ValueError(f"`{key}` is read from the state dict; received {key}={build_kwargs[key]!r} as well.")
    model = models.build(_registry_name(arguments), **arguments, **build_kwargs)

    weights = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        layer, kind = _torchvision_layer_name(key)
        weights.setdefault(layer, {})[kind] = value
    for layer, values in weights.items():
        _assign(model, layer, _torchvision_layer_weights(values), source=f"torchvision {layer}")
    _check_all_assigned(model, weights)
    return model


def _read_state_dict(state_dict):
    if isinstance(state_dict, (str, pathlib.Path)):
        path = pathlib.Path(state_dict)
        if not path.is_file():
            raise FileNotFoundError(f"State dict file '{path}' does not exist; pass the path of a .pth file.")
        try:
            import torch
        except ImportError as error:
            raise ValueError(
                f"Reading '{path}' needs PyTorch; install it with pip install 'keras3-resnet[torch]', or pass a "
                "dict of NumPy arrays."
            ) from error
        # weights_only=True unpickles tensors and plain containers only, so a
        # file cannot run code while it loads.
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not hasattr(state_dict, "items"):
        raise TypeError(f"`state_dict` must be a .pth path or a mapping of names to tensors; received {type(state_dict).__name__}.")
    return {str(key): _to_numpy(value) for key, value in state_dict.items()}


def _to_numpy(value):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


_TORCHVISION_KEY = re.compile(
    r"^(?:(?P<stem>conv1|bn1)|fc|layer(?P<stage>\d+)\.(?P<block>\d+)\.(?P<part>conv\d|bn\d|downsample\.[01]))"
    r"\.(?P<kind>weight|bias|running_mean|running_var)$"
)


def _torchvision_layer_name(key):
    match = _TORCHVISION_KEY.match(key)
    if not match:
        raise ValueError(f"Unexpected key {key!r} in the state dict: expected the keys of a torchvision ResNet.")
    if match["stem"]:
        layer = f"stem_{match['stem']}"
    elif match["stage"] is None:
        layer = "head_dense"
    else:
        prefix = f"stage{match['stage']}_block{int(match['block']) + 1}"
        part = {"downsample.0": "shortcut_conv", "downsample.1": "shortcut_bn"}.get(match["part"], match["part"])
        layer = f"{prefix}_{part}"
    return layer, match["kind"]


def _torchvision_layer_weights(values):
    if "running_mean" in values:
        return [values["weight"], values["bias"], values["running_mean"], values["running_var"]]
    kernel = values["weight"]
    if kernel.ndim == 4:
        # PyTorch stores (out, in / groups, height, width); Keras (height, width, in / groups, out).
        return [kernel.transpose(2, 3, 1, 0)]
    return [kernel.T, values["bias"]]


def _torchvision_architecture(state):
    stages = []
    for stage in range(1, 5):
        blocks = {int(key.split(".")[1]) for key in state if key.startswith(f"layer{stage}.")}
        stages.append(len(blocks))
    block = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    depths = [d for d, layout in config.IMAGENET_STAGES.items() if layout == (block, tuple(stages))]
    if "fc.weight" not in state or not depths:
        raise ValueError(
            f"The state dict is not a torchvision ResNet of a supported depth: found {block} blocks per stage "
            f"{stages}; supported layouts: {config.IMAGENET_STAGES}."
        )

    arguments = {"depth": depths[0], "family": "imagenet", "num_classes": int(state["fc.weight"].shape[0])}
    if block == "bottleneck":
        width, per_group = state["layer1.0.conv2.weight"].shape[:2]
        groups = width // per_group
        arguments["groups"] = int(groups)
        # Stage 1 has 64 filters, so its inner width is width_per_group * groups.
        arguments["width_per_group"] = int(width // groups * config.BASE_WIDTH_PER_GROUP // config.IMAGENET_STAGE_FILTERS[0])
    return arguments


def _registry_name(arguments):
    """Return the registry name of a torchvision layout, such as "resnext50_32x4d", or None."""
    layout = {key: value for key, value in arguments.items() if key != "num_classes"}
    if layout.get("groups") == 1:
        del layout["groups"]
    if layout.get("width_per_group") == config.BASE_WIDTH_PER_GROUP:
        del layout["width_per_group"]
    return next((name for name, entry in VARIANTS.items() if entry == layout), None)


def from_keras_applications(source, **build_kwargs):
    """Copy a keras.applications ResNet into the keras_resnet network of the same layout.

    ResNet50, ResNet101 and ResNet152 become the v1 network
    (`stride_in_1x1=True`, `conv_bias=True`); ResNet50V2, ResNet101V2 and
    ResNet152V2 become the pre-activation network with the stride in the last
    block of each stage (`preact=True`, `stride_block="last"`,
    `conv_bias=True`). Biases that keras.applications leaves out are set to
    zero, and its BatchNorm epsilon of 1.001e-5 is folded into the moving
    variance, so the outputs agree to float32 rounding.

    Args:
        source: a `keras.Model` from `keras.applications.ResNet50` and the
            like, built with or without its top.
        **build_kwargs: further `build()` arguments; the input shape, the
            number of classes and `include_top` are read from `source`.

    Returns:
        A `keras.Model` built by `keras_resnet.build`.

    Raises:
        ValueError: if `source` is not one of the six keras.applications
            ResNets.
    """
    names = {layer.name for layer in source.layers}
    preact = "post_bn" in names
    pattern = re.compile(r"^conv(\d)_block(\d+)_out$")
    counts = {}
    for name in names:
        match = pattern.match(name)
        if match:
            stage = int(match[1]) - _KERAS_STAGE_OFFSET
            counts[stage] = max(counts.get(stage, 0), int(match[2]))
    stages = tuple(counts.get(stage, 0) for stage in range(1, 5))
    depths = [d for d, layout in config.IMAGENET_STAGES.items() if layout == ("bottleneck", stages)]
    if "conv1_conv" not in names or not depths:
        raise ValueError(
            f"`source` is not a keras.applications ResNet: model {source.name!r} has blocks per stage {stages}; "
            "expected ResNet50, ResNet101, ResNet152 or their V2 models."
        )

    include_top = "predictions" in names
    arguments = {
        "depth": depths[0],
        "family": "imagenet",
        "stride_in_1x1": not preact,
        "preact": preact,
        "stride_block": "last" if preact else "first",
        "conv_bias": True,
        "input_shape": tuple(source.input_shape[1:]),
        "include_top": include_top,
    }
    if include_top:
        dense = source.get_layer("predictions")
        arguments["num_classes"] = dense.units
        arguments["classifier_activation"] = _activation_name(dense)
    arguments.update(build_kwargs)
    model = models.build(**arguments)

    copied = {}
    for layer in source.layers:
        target = _keras_applications_target(layer.name)
        if target is None or not layer.weights:
            continue
        weights = [np.asarray(w) for w in layer.get_weights()]
        if layer.__class__.__name__ == "BatchNormalization":
            epsilon = model.get_layer(target).epsilon
            weights[3] = weights[3] + layer.epsilon - epsilon
        elif layer.__class__.__name__ == "Conv2D" and not layer.use_bias:
            weights.append(np.zeros(weights[0].shape[-1], weights[0].dtype))
        _assign(model, target, weights, source=f"keras.applications {layer.name}")
        copied[target] = True
    _check_all_assigned(model, copied)
    return model


def _activation_name(layer):
    """Return the name of a Keras layer's activation, or None for linear."""
    activation = layer.get_config().get("activation")
    return None if activation in (None, "linear") else activation


def _keras_applications_target(name):
    if name == "conv1_conv":
        return "stem_conv1"
    if name == "conv1_bn":
        return "stem_bn1"
    if name == "post_bn":
        return "post_bn"
    if name == "predictions":
        return "head_dense"
    match = re.match(r"^conv(\d)_block(\d+)_(.+)$", name)
    if match and match[3] in _KERAS_BLOCK_PARTS:
        stage = int(match[1]) - _KERAS_STAGE_OFFSET
        return f"stage{stage}_block{match[2]}_{_KERAS_BLOCK_PARTS[match[3]]}"
    return None


def _assign(model, layer_name, weights, source):
    try:
        layer = model.get_layer(layer_name)
    except ValueError as error:
        raise ValueError(f"{source} has no counterpart: the model has no layer {layer_name!r}.") from error
    expected = [tuple(w.shape) for w in layer.weights]
    received = [tuple(w.shape) for w in weights]
    if expected != received:
        raise ValueError(f"{source}: layer {layer_name!r} expects weight shapes {expected}; received {received}.")
    layer.set_weights(weights)


def _check_all_assigned(model, assigned):
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in assigned]
    if missing:
        raise ValueError(f"No source weights for layers {missing}; the source model does not match the target layout.")
    logger.info("Converted weights into %d layers of %s", len(assigned), model.name)


TORCHVISION_SUFFIXES = (".pth", ".pt")


def convert_file(source, output, overwrite=False, **build_kwargs):
    """Convert a torchvision `.pth` file or a keras.applications `.keras` file into a `.keras` file.

    The output is written to a temporary file and renamed, so an interrupted
    conversion never leaves a truncated file.

    Args:
        source: path of a torchvision state dict (`.pth` or `.pt`) or of a
            keras.applications ResNet saved with `model.save` (`.keras`).
        output: path of the `.keras` file to write.
        overwrite: bool, whether an existing `output` may be replaced.
            Defaults to False.
        **build_kwargs: further `build()` arguments, such as `input_shape`.

    Returns:
        The converted `keras.Model`.

    Raises:
        FileExistsError: if `output` exists and `overwrite` is False.
        FileNotFoundError: if `source` does not exist.
        ValueError: if a suffix is not one of those above, or the source is
            not a supported ResNet.
    """
    source, output = pathlib.Path(source), pathlib.Path(output)
    if output.suffix != ".keras":
        raise ValueError(f"The output must be a .keras file; received '{output}'.")
    if output.exists() and not overwrite:
        raise FileExistsError(f"'{output}' already exists; pass --overwrite to replace it or choose another output.")
    if source.suffix in TORCHVISION_SUFFIXES:
        model = from_torchvision(source, **build_kwargs)
    elif source.suffix == ".keras":
        model = from_keras_applications(saving.load_model(source, compile=False), **build_kwargs)
    else:
        accepted = ", ".join((*TORCHVISION_SUFFIXES, ".keras"))
        raise ValueError(f"Cannot tell the format of '{source}': expected a file ending in {accepted}.")

    with saving.atomic_path(output) as temporary:
        model.save(temporary)
    logger.info("Wrote %s (%s, %d parameters)", output, model.name, model.count_params())
    return model
