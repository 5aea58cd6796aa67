"""Export a trained `.keras` model as a SavedModel for TF Serving, or as ONNX.

`export_saved_model` writes `BASE/NAME/VERSION/`, the layout TF Serving
watches: a model base path holding one folder per integer version. The
SavedModel has the `serve` tag and three signatures, all with a dynamic batch
dimension:

| signature            | input                                        | for clients that send |
|----------------------|----------------------------------------------|-----------------------|
| `serving_default`    | `image_bytes`: string `(batch,)`             | encoded JPEG/PNG/GIF/BMP files (REST: `{"b64": ...}`) |
| `predict_pixels`     | `images`: float32 `(batch, h, w, channels)`  | decoded pixel values in 0-255 |
| `predict_pixels_uint8` | `images`: uint8 `(batch, h, w, channels)`  | decoded pixel values |

Each returns `probabilities` (float32, batch x classes), `classes` (int64,
the top-1 index) and `class_names` (string, the top-1 class name). Encoded
images are decoded, resized to the model's input size and normalised inside
the graph by the functions training uses (`data.decode_image`,
`data.resize_image`, and the model's own "input_normalize" layer), so any
image size is accepted. Exports run the model with each BatchNorm folded into
the convolution before it (`fold_batch_norm`), which computes the same
outputs up to float32 rounding with fewer operations. The class names come from the model's `ClassLabels`
layer, which `keras-resnet train` adds.

The serving graph is built with TensorFlow. A model trained under JAX or
PyTorch is exported by loading its `.keras` file under the TensorFlow
backend in a child process: the weights are the same on every backend, and
Keras 3.15's own `model.export` fails under the PyTorch backend.
"""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import keras

from keras_resnet import config
from keras_resnet import saving

logger = logging.getLogger(__name__)

FORMATS = ("saved_model", "onnx")
DEFAULT_BASE_DIR = "saved_models"
# Written into the SavedModel's assets.extra folder, which TF Serving ignores.
METADATA_FILE = "keras_resnet.json"
# TF Serving takes the model name from its config and the version from a
# folder name. These characters keep both valid in REST URLs.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
# TF Serving parses version folder names as signed 64-bit integers.
MAX_VERSION = 2**63 - 1
# Tries to claim the next free version when other exports take it first.
_CLAIM_ATTEMPTS = 20


def export_saved_model(model_path, name, *, base_dir=DEFAULT_BASE_DIR, version=None, overwrite=False):
    """Export a `.keras` model as a SavedModel laid out for TF Serving.

    The SavedModel is written into a hidden staging folder beside the version
    folders (TF Serving ignores names that are not integers) and renamed into
    place when complete, so a half-written export is never taken for a
    version.

    Args:
        model_path: str or path of a `.keras` file, such as the `model.keras`
            of a training run.
        name: str, the model name: letters, digits, ".", "_" and "-".
        base_dir: str or path, TF Serving's model base path is
            `base_dir/name`. Defaults to "saved_models".
        version: int >= 1 or None for one more than the highest existing
            version (1 for the first). Defaults to None.
        overwrite: bool, replace an existing version folder. Defaults to
            False.

    Returns:
        The `pathlib.Path` of the version folder.

    Raises:
        ValueError: for a bad name or version, or a model that cannot be
            served (no fixed input size).
        FileNotFoundError: if `model_path` does not exist.
        FileExistsError: if the version exists and `overwrite` is False.
        RuntimeError: if TensorFlow is missing or the export fails.

    Example:

    >>> path = keras_resnet.export_saved_model("runs/resnet20/model.keras", "cifar10")
    >>> path
    PosixPath('saved_models/cifar10/1')
    """
    model_path = _check_model_path(model_path)
    _check_name(name)
    if version is not None:
        version = config.check_int("version", version, minimum=1)
        if version > MAX_VERSION:
            raise ValueError(f"`version` must be at most {MAX_VERSION}, TF Serving's limit; received {version}.")
    _require_tensorflow(model_path)

    model_dir = Path(base_dir) / name
    target = model_dir / str(version) if version is not None else None
    if target is not None and target.exists() and not overwrite:
        raise FileExistsError(_exists_message(target, model_dir))
    created = _make_folders(model_dir)
    _remove_abandoned_staging(model_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".export-{os.getpid()}-", dir=model_dir))
    try:
        _under_tensorflow("saved_model", model_path, staging / "model")
        target = _claim_version(staging, model_dir, version, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(created):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    logger.info("Exported %s to %s", model_path, target)
    return target


def export_onnx(model_path, output=None, *, overwrite=False):
    """Export a `.keras` model as an ONNX file.

    The ONNX graph has one input, "images": float32 pixel values in 0-255 at
    the model's input size, `(batch, height, width, channels)` with a dynamic
    batch. It normalises inside and has one output, "probabilities" (softmax
    is added for a model that outputs logits). Keras's own
    `model.export(format="onnx")` converts the model with tf2onnx, in a child
    process under the TensorFlow backend where needed.

    Args:
        model_path: str or path of a `.keras` file.
        output: str or path of the `.onnx` file. Defaults to the model path
            with the suffix `.onnx`.
        overwrite: bool, replace an existing file. Defaults to False.

    Returns:
        The `pathlib.Path` of the ONNX file.

    Raises:
        FileNotFoundError: if `model_path` does not exist.
        FileExistsError: if `output` exists and `overwrite` is False.
        RuntimeError: if TensorFlow or tf2onnx is missing, or the export fails.
    """
    model_path = _check_model_path(model_path)
    output = Path(output) if output is not None else model_path.with_suffix(".onnx")
    if output.suffix != ".onnx":
        raise ValueError(f"The ONNX file name must end in .onnx; received '{output}'.")
    if output.is_dir():
        raise ValueError(f"'{output}' is a folder; `output` must be an .onnx file path.")
    if output.exists() and not overwrite:
        raise FileExistsError(f"'{output}' already exists; choose another `output` or pass `overwrite` to replace it.")
    _require_tensorflow(model_path)

    output.parent.mkdir(parents=True, exist_ok=True)
    with saving.atomic_path(output) as partial:
        _under_tensorflow("onnx", model_path, partial)
    logger.info("Exported %s to %s", model_path, output)
    return output


def next_version(model_dir):
    """Return one more than the highest integer version folder in `model_dir`."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return 1
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max((v for v in versions if v < MAX_VERSION), default=0) + 1


def serving_info(model):
    """Return what serving needs to know about a model, as a dict.

    Keys: "height", "width", "channels" (the input size), "class_names" (the
    stored names, or the output indices as strings when the model has none)
    and "softmax" (whether the model already outputs probabilities).

    Raises:
        ValueError: if the model has no fixed input size or no classifier.
    """
    from keras_resnet import models

    _, height, width, channels = model.input_shape
    if height is None or width is None:
        raise ValueError(
            f"Serving needs a fixed input size, but {model.name!r} takes {model.input_shape}; rebuild it with "
            "`input_shape=(height, width, channels)`."
        )
    activation = _classifier_activation(model)
    if len(model.output_shape) != 2 or activation not in ("softmax", "linear"):
        raise ValueError(
            f"Serving needs a classifier that outputs (batch, classes) probabilities (softmax) or logits "
            f"(no activation); {model.name!r} ends in {model.layers[-1].name!r} with output "
            f"{model.output_shape} and activation {activation!r}. Build it with `include_top=True`."
        )
    names = models.class_names(model)
    if names is None:
        names = [str(index) for index in range(model.output_shape[-1])]
        logger.warning("%s stores no class names; class_names will be the output indices.", model.name)
    softmax = activation == "softmax"
    return {"height": height, "width": width, "channels": channels, "class_names": names, "softmax": softmax}


def _classifier_activation(model):
    # The layer that computes the output, looking through ClassLabels.
    from keras_resnet import layers

    layer = model.layers[-1]
    if isinstance(layer, layers.ClassLabels):
        layer = layer._inbound_nodes[0].parent_nodes[0].operation
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if isinstance(layer, (keras.layers.Dense, keras.layers.Activation)):
        return keras.activations.serialize(layer.activation)
    return None


def fold_batch_norm(model):
    """Return a copy of `model` with each BatchNorm folded into its convolution.

    A BatchNormalization layer in inference mode is an affine map per
    channel, so where it directly follows a Conv2D whose only consumer it is,
    the convolution can absorb it: the kernel is scaled by
    `gamma / sqrt(variance + epsilon)` and a bias takes up the rest. The BN
    layer becomes an identity layer of the same name. The result computes the same
    function at inference up to float32 rounding, with one layer fewer to run
    per convolution; it is meant for serving, not for further training.
    Every layer of the copy computes in float32, also where `model` was
    built under a mixed-precision policy: serving then gives the same
    outputs on any machine, bfloat16 instructions or not.

    Args:
        model: a functional `keras.Model`.

    Returns:
        A new `keras.Model`; `model` is unchanged.
    """
    import numpy as np

    folds = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        parents = [node.operation for node in layer._inbound_nodes[0].parent_nodes]
        if len(parents) == 1 and _foldable(parents[0], layer):
            folds[parents[0].name] = layer

    def clone(layer):
        config = dict(layer.get_config(), dtype="float32")
        if layer.name in folds:
            return keras.layers.Conv2D.from_config(dict(config, use_bias=True))
        if any(bn is layer for bn in folds.values()):
            return _FoldedBatchNorm(name=layer.name, dtype="float32")
        return layer.__class__.from_config(config)

    folded = keras.models.clone_model(model, clone_function=clone)
    for source, target in zip(model.layers, folded.layers):
        if source.name in folds:
            bn = folds[source.name]
            variance = keras.ops.convert_to_numpy(bn.moving_variance).astype("float64")
            gamma = keras.ops.convert_to_numpy(bn.gamma).astype("float64") if bn.scale else 1.0
            beta = keras.ops.convert_to_numpy(bn.beta).astype("float64") if bn.center else 0.0
            mean = keras.ops.convert_to_numpy(bn.moving_mean).astype("float64")
            scale = gamma / np.sqrt(variance + bn.epsilon)
            kernel = keras.ops.convert_to_numpy(source.kernel).astype("float64")
            bias = keras.ops.convert_to_numpy(source.bias).astype("float64") if source.use_bias else 0.0
            target.set_weights([(kernel * scale).astype("float32"), ((bias - mean) * scale + beta).astype("float32")])
        elif not isinstance(target, _FoldedBatchNorm):
            target.set_weights(source.get_weights())
    return folded


def _foldable(conv, batch_norm):
    # Only a linear, channels_last convolution that feeds nothing but the
    # BatchNorm, which normalises its channel axis, can absorb it.
    return (
        type(conv) is keras.layers.Conv2D
        and len(conv._outbound_nodes) == 1
        and conv.data_format == "channels_last"
        and keras.activations.serialize(conv.activation) == "linear"
        and batch_norm.axis in (-1, 3)
    )


class _FoldedBatchNorm(keras.layers.Layer):
    # An identity that accepts BatchNormalization's call arguments, which the
    # cloned graph passes on.
    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _check_model_path(model_path):
    model_path = Path(model_path)
    if model_path.suffix != ".keras":
        raise ValueError(f"The model must be a .keras file; received '{model_path}'.")
    if model_path.is_dir():
        raise ValueError(f"'{model_path}' is a folder; give the path of a .keras file.")
    if not model_path.is_file():
        raise FileNotFoundError(f"Model file not found: '{model_path}'.")
    return model_path


def _check_name(name):
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"The model name must start with a letter or digit and contain only letters, digits, '.', '_' and "
            f"'-', at most 100 characters; received {name!r}."
        )


def _require_tensorflow(model_path):
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        raise RuntimeError(
            f"Export needs TensorFlow, which is not installed; install it with `pip install tensorflow` and "
            f"export again. '{model_path}' is unchanged and loads under any Keras backend."
        )


def _exists_message(target, model_dir):
    return (
        f"Version folder '{target}' already exists; pass another `version`, leave `version` out to take "
        f"the next free one ({next_version(model_dir)}), or pass `overwrite` to replace it."
    )


def _make_folders(model_dir):
    # Returns the folders this call created, outermost first, so that a
    # failed export can remove them again.
    missing = [folder for folder in (model_dir.parent, model_dir) if not folder.exists()]
    for folder in (model_dir.parent, model_dir):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"'{folder}' is a file; the model base path must be a folder or not exist yet.")
    model_dir.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_abandoned_staging(model_dir):
    # Staging folders are named after the exporting process; one whose
    # process has ended was left by a killed export.
    for folder in model_dir.glob(".export-*-*"):
        pid = folder.name.split("-")[1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            logger.info("Removing %s, left by an export that did not finish", folder)
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass


def _claim_version(staging, model_dir, version, overwrite):
    if version is not None:
        target = model_dir / str(version)
        _move_into_place(staging / "model", target, staging / "replaced" if overwrite and target.exists() else None)
        return target

    # Another export may take the next number between the check and the
    # rename, so a refused rename moves on to the number after it.
    for _ in range(_CLAIM_ATTEMPTS):
        target = model_dir / str(next_version(model_dir))
        try:
            _move_into_place(staging / "model", target, None)
            return target
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not claim a free version folder in '{model_dir}' after {_CLAIM_ATTEMPTS} tries.")


def _move_into_place(source, target, replaced):
    if replaced is not None and target.exists():
        os.rename(target, replaced)
    try:
        os.rename(source, target)
    except OSError as error:
        if replaced is not None and replaced.exists():
            os.rename(replaced, target)
        # rename() refuses a non-empty folder, so a version that another
        # export created in the meantime is never replaced.
        raise FileExistsError(f"Version folder '{target}' appeared during the export; nothing was replaced.") from error


def _under_tensorflow(kind, model_path, output):
    if keras.backend.backend() == "tensorflow":
        _WRITERS[kind](model_path, output)
        return

    # Keras picks its backend once per process, so the export runs in a
    # child process that starts with the TensorFlow backend.
    command = [sys.executable, "-m", "keras_resnet.export", kind, str(model_path), str(output)]
    environment = dict(os.environ, KERAS_BACKEND="tensorflow")
    logger.info("Exporting under the TensorFlow backend in a child process")
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit status {result.returncode}"
        raise RuntimeError(f"The export under the TensorFlow backend failed: {detail}")


def _write_saved_model(model_path, directory):
    import tensorflow as tf

    from keras_resnet import data

    info = serving_info(saving.load_model(model_path))
    model = fold_batch_norm(saving.load_model(model_path))
    height, width, channels = info["height"], info["width"], info["channels"]
    names = tf.constant(info["class_names"])

    def predict(pixels):
        probabilities = tf.cast(model(pixels, training=False), tf.float32)
        if not info["softmax"]:
            probabilities = tf.nn.softmax(probabilities, axis=-1)
        classes = tf.argmax(probabilities, axis=-1)
        return {"probabilities": probabilities, "classes": classes, "class_names": tf.gather(names, classes)}

    def serve_encoded(image_bytes):
        def one(encoded):
            image = data.resize_image(data.decode_image(encoded, channels), height, width)
            return tf.cast(image, tf.float32)

        pixel_spec = tf.TensorSpec((height, width, channels), tf.float32)
        return predict(tf.map_fn(one, image_bytes, fn_output_signature=pixel_spec))

    def serve_pixels(images):
        # Training pixels are always in 0-255; clipping here keeps out-of-range
        # inputs consistent whether or not they need resizing.
        pixels = tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0)
        return predict(data.resize_image(pixels, height, width))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", serve_encoded, input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")]
    )
    for signature, dtype in (("predict_pixels", tf.float32), ("predict_pixels_uint8", tf.uint8)):
        spec = tf.TensorSpec((None, None, None, channels), dtype, name="images")
        archive.add_endpoint(signature, serve_pixels, input_signature=[spec])
    archive.write_out(str(directory), verbose=False)

    # TF Serving reads only the SavedModel; `keras-resnet predict` also
    # reads the full list of class names, for its top-k table, from here.
    extra = Path(directory) / "assets.extra"
    extra.mkdir(exist_ok=True)
    metadata = {key: info[key] for key in ("height", "width", "channels", "class_names")}
    (extra / METADATA_FILE).write_text(json.dumps(dict(metadata, source=str(model_path)), indent=2) + "\n")


def _write_onnx(model_path, output):
    import importlib.util

    missing = [package for package in ("tf2onnx", "onnx") if importlib.util.find_spec(package) is None]
    if missing:
        raise RuntimeError(
            f"ONNX export needs {' and '.join(missing)}; install them with `pip install keras3-resnet[onnx]`."
        )
    info = serving_info(saving.load_model(model_path))
    model = fold_batch_norm(saving.load_model(model_path))
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization) and layer.mean is not None:
            # tf2onnx turns tensors captured from outside the traced function
            # into extra graph inputs, so the ONNX file would ask its caller
            # for the mean and variance. NumPy arrays are traced as constants.
            layer.mean = keras.ops.convert_to_numpy(layer.mean)
            layer.variance = keras.ops.convert_to_numpy(layer.variance)
    if not info["softmax"]:
        model = keras.Model(model.inputs, keras.layers.Softmax(name="probabilities")(model.outputs[0]))

    import onnx
    import tensorflow as tf

    spec = tf.TensorSpec((None, info["height"], info["width"], info["channels"]), tf.float32, name=ONNX_INPUT)
    with warnings.catch_warnings():
        # tf2onnx still looks up np.object, which NumPy 2 warns about.
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(output), format="onnx", input_signature=[spec], verbose=False)

    # tf2onnx names the output after a graph tensor ("Identity:0"); give
    # clients the name that the SavedModel uses.
    graph = onnx.load(str(output))
    (old_name,) = [value.name for value in graph.graph.output]
    for node in graph.graph.node:
        node.output[:] = [ONNX_OUTPUT if name == old_name else name for name in node.output]
    graph.graph.output[0].name = ONNX_OUTPUT
    onnx.save(graph, str(output))


_WRITERS = {"saved_model": _write_saved_model, "onnx": _write_onnx}
ONNX_INPUT = "images"
ONNX_OUTPUT = "probabilities"


if __name__ == "__main__":
    # The child process of `_under_tensorflow`.
    logging.basicConfig(level=logging.WARNING)
    _kind, _model_path, _output = sys.argv[1:4]
    try:
        _WRITERS[_kind](Path(_model_path), Path(_output))
    except Exception as error:  # noqa: BLE001 - reported to the parent in one line
        sys.stderr.write(f"{type(error).__name__}: {error}".replace("\n", " ") + "\n")
        sys.exit(1)
