"""Classify image files with a `.keras` model or an exported SavedModel."""

import json
from pathlib import Path

import numpy as np

from keras_resnet import export
from keras_resnet import saving

# Images decoded and classified together; bounds memory for long file lists.
BATCH_SIZE = 64


def predict_images(model_path, image_paths, top=5):
    """Return the `top` most probable classes of each image file.

    Args:
        model_path: str or path: a `.keras` file, an exported SavedModel
            version folder (`saved_models/NAME/VERSION`), or a model base
            folder (`saved_models/NAME`), whose highest version is used.
        image_paths: sequence of image file paths (JPEG, PNG, GIF or BMP).
        top: int >= 1, classes to report per image (at most the number of
            classes). Defaults to 5.

    Returns:
        A list with one dict per image: `{"image": path, "top": [{"class":
        name, "index": int, "probability": float}, ...]}`, most probable
        first.

    Raises:
        ValueError: for an unknown model format, an empty image list or a bad
            `top`; also for a file that cannot be decoded, naming it.
        FileNotFoundError: for a missing model or image file.
    """
    from keras_resnet import config
    from keras_resnet import data

    top = config.check_int("top", top, minimum=1)
    image_paths = [Path(p) for p in image_paths]
    if not image_paths:
        raise ValueError("Give at least one image file to classify.")
    for path in image_paths:
        if path.exists() and not path.is_file():
            raise ValueError(f"'{path}' is not a regular file; give image files.")
        if not path.is_file():
            raise FileNotFoundError(f"Image file not found: '{path}'.")
    bad = data.find_unreadable_images([str(p) for p in image_paths])
    if bad:
        listing = "; ".join(f"{path} ({reason})" for path, reason in bad.items())
        raise ValueError(
            f"{len(bad)} file(s) cannot be decoded as JPEG, PNG, GIF, BMP or WebP images: {listing}."
        )

    classify, class_names = _classifier(Path(model_path))
    probabilities = np.concatenate(
        [classify([p.read_bytes() for p in image_paths[i : i + BATCH_SIZE]]) for i in range(0, len(image_paths), BATCH_SIZE)]
    )
    results = []
    for path, row in zip(image_paths, probabilities):
        best = np.argsort(-row, kind="stable")[: min(top, row.shape[0])]
        ranked = [{"class": class_names[i], "index": int(i), "probability": float(row[i])} for i in best]
        results.append({"image": str(path), "top": ranked})
    return results


def _classifier(model_path):
    if model_path.suffix == ".keras":
        return _keras_classifier(model_path)
    if model_path.is_dir():
        return _saved_model_classifier(_version_folder(model_path))
    if not model_path.exists():
        raise FileNotFoundError(f"Model not found: '{model_path}'.")
    raise ValueError(
        f"The model must be a .keras file or an exported SavedModel folder; received '{model_path}'."
    )


def _version_folder(path):
    if (path / "saved_model.pb").is_file():
        return path
    latest = export.next_version(path) - 1
    if latest == 0:
        raise ValueError(
            f"'{path}' contains neither saved_model.pb nor integer version folders; give a .keras file, a "
            "SavedModel folder such as saved_models/NAME/1, or its parent saved_models/NAME."
        )
    return path / str(latest)


def _decoded_batch(encoded_images, height, width, channels):
    import tensorflow as tf

    from keras_resnet import data

    images = []
    for encoded in encoded_images:
        image = data.resize_image(data.decode_image(tf.constant(encoded), channels), height, width)
        images.append(image.numpy().astype("float32"))
    return np.stack(images)


def _keras_classifier(model_path):
    import keras

    model = saving.load_model(model_path)
    info = export.serving_info(model)

    def classify(encoded_images):
        pixels = _decoded_batch(encoded_images, info["height"], info["width"], info["channels"])
        outputs = np.asarray(model.predict(pixels, verbose=0), dtype="float32")
        return outputs if info["softmax"] else keras.ops.convert_to_numpy(keras.ops.softmax(outputs, axis=-1))

    return classify, info["class_names"]


def _saved_model_classifier(folder):
    import tensorflow as tf

    metadata_path = folder / "assets.extra" / export.METADATA_FILE
    if not metadata_path.is_file():
        raise ValueError(f"'{folder}' was not exported by keras_resnet: it has no assets.extra/{export.METADATA_FILE}.")
    try:
        class_names = json.loads(metadata_path.read_text())["class_names"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"'{metadata_path}' is damaged: expected JSON with a \"class_names\" list; export the model again."
        ) from error
    try:
        serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    except (OSError, ValueError, KeyError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"'{folder}' is not a readable keras_resnet SavedModel ({reason}); export it again.") from error

    def classify(encoded_images):
        return serve(image_bytes=tf.constant(encoded_images))["probabilities"].numpy()

    return classify, class_names
