"""tf.data input pipelines for training and validation.

`load_datasets()` reads one of three sources and returns batched
`tf.data.Dataset`s of `(image, label)` pairs that `model.fit` accepts under
every Keras backend:

- "sample": real CIFAR-10 images shipped inside this package (4,000 for
  training, 1,000 for validation), so training works offline.
- a folder with one sub-folder of images per class; the last
  `validation_split` of each class's sorted files is held out.
- "tfds:NAME" (or a bare NAME that is not a folder): a tensorflow-datasets
  data set such as "cifar10", downloaded on first use.

Images come out as float32 pixel values in [0, 255], RGB or grayscale. Per-channel
normalisation happens inside the model (`build(input_normalization=...)`)
with the mean and std that `load_datasets` measures on the training images,
so a saved model takes raw pixels, just as a serving client sends them.
"""

import concurrent.futures
import dataclasses
import json
import logging
import math
import os
import pathlib
import re

import numpy as np
import tensorflow as tf

from keras_resnet import config

logger = logging.getLogger(__name__)

SAMPLE_DIR = pathlib.Path(__file__).resolve().parent / "sample_data"
SAMPLE = "sample"
TFDS_PREFIX = "tfds:"
# Formats that tf.io.decode_image reads (TensorFlow 2.21).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# Decoded uint8 images are cached in memory when they fit in this many bytes.
# All 50,000 CIFAR-10 images take 150 MiB. Larger sets are decoded anew
# every epoch.
CACHE_LIMIT_BYTES = 2 * 1024**3
CHANNELS = (1, 3)
# The channel mean and std are measured on at most this many training images.
STATS_IMAGES = 5000


class DataUnavailableError(RuntimeError):
    """A data set exists but cannot be read or downloaded right now."""


@dataclasses.dataclass
class Datasets:
    """Batched training and validation pipelines and what describes them.

    Attributes:
        train: `tf.data.Dataset` of `(images, labels)` batches, shuffled and
            augmented; images are float32 `(batch, height, width, channels)`.
        validation: the same without shuffling or augmentation, or None when
            `validation_split` is 0.
        class_names: list of str, the label of index i is `class_names[i]`.
        image_shape: tuple `(height, width, channels)`.
        train_size: int, number of training images.
        validation_size: int, number of validation images.
        mean: tuple of floats, per-channel mean of the training pixels.
        std: tuple of floats, per-channel standard deviation.
        source: str, the source as given.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    class_names: list
    image_shape: tuple
    train_size: int
    validation_size: int
    mean: tuple
    std: tuple
    source: str


@dataclasses.dataclass
class _Split:
    """Decoded uint8 images before batching."""

    images: tf.data.Dataset
    size: int


def load_datasets(
    source=SAMPLE,
    *,
    batch_size=128,
    image_size=None,
    validation_split=0.1,
    augment=True,
    seed=0,
    data_dir=None,
    skip_bad_images=False,
    channels=3,
):
    """Build the training and validation pipelines for a data source.

    Args:
        source: "sample" (the default), the path of a folder with one
            sub-folder per class, or "tfds:NAME" for a tensorflow-datasets
            name such as "tfds:cifar10". A bare name that is not an existing
            folder is taken as a tensorflow-datasets name.
        batch_size: int >= 1, images per batch. Defaults to 128.
        image_size: int or None. Images are resized to this square size;
            None keeps the source's size (folders: the first image's size).
        validation_split: float in [0, 1), the fraction of each class held
            out for validation, for folders and tensorflow-datasets (which
            slice in whole percent). The shipped sample has a fixed validation
            part of 1,000 images; with 0 those images join the training part.
            Defaults to 0.1.
        augment: bool, whether training images get the standard CIFAR
            augmentation: zero-pad by 1/8 of the size, random crop back, and
            random horizontal flip. Defaults to True.
        seed: int, seed for shuffling and augmentation. Defaults to 0.
        data_dir: str or None, where tensorflow-datasets stores data.
        skip_bad_images: bool. Every file of a folder source is decoded once
            before training. Files that fail to decode (empty, truncated, not
            an image) stop the call with a `ValueError` naming each of them,
            or, when this is True, are left out with a warning that lists
            them. Defaults to False.
        channels: 3 for RGB (the default) or 1 for grayscale. Every source
            is converted: grayscale and palette images to RGB, colour images
            to grayscale, and an alpha channel is dropped.

    Returns:
        A `Datasets`.

    Raises:
        ValueError: for a folder that does not exist, contains no images or
            contains files that cannot be decoded, an unknown tensorflow-datasets
            name, or an invalid argument.
        DataUnavailableError: when a tensorflow-datasets download fails.
    """
    batch_size = config.check_int("batch_size", batch_size, minimum=1)
    if image_size is not None:
        image_size = config.check_int("image_size", image_size, minimum=1)
    validation_split = config.check_in_range("validation_split", validation_split, 0, 1, "a number in [0, 1)")
    if isinstance(channels, bool) or channels not in CHANNELS:
        raise ValueError(f"`channels` must be 1 (grayscale) or 3 (RGB); received {channels!r}.")

    kind, location = resolve_source(source)
    if kind == "sample":
        train, validation, class_names = _read_sample(validation_split, channels)
    elif kind == "folder":
        train, validation, class_names = _read_folder(location, validation_split, skip_bad_images, channels)
    else:
        train, validation, class_names = _read_tfds(location, validation_split, data_dir, channels)

    height, width = _image_size(train.images, image_size)
    resize = _resizer(height, width, channels)
    train.images = train.images.map(resize, num_parallel_calls=tf.data.AUTOTUNE)
    if validation is not None:
        validation.images = validation.images.map(resize, num_parallel_calls=tf.data.AUTOTUNE)
    mean, std = channel_stats(train.images)

    return Datasets(
        train=_batch(train, batch_size, shuffle=True, augment=augment, seed=seed),
        validation=None if validation is None else _batch(validation, batch_size),
        class_names=class_names,
        image_shape=(height, width, channels),
        train_size=train.size,
        validation_size=0 if validation is None else validation.size,
        mean=mean,
        std=std,
        source=str(source),
    )


def resolve_source(source):
    """Return `(kind, location)` for a `source` argument of `load_datasets`.

    `kind` is "sample", "folder" or "tfds".
    """
    source = os.fspath(source) if isinstance(source, os.PathLike) else source
    if not isinstance(source, str) or not source:
        raise ValueError(
            f"Invalid data source {source!r}: pass 'sample', a folder with one sub-folder per class, "
            "or 'tfds:NAME' such as 'tfds:cifar10'."
        )
    if source == SAMPLE:
        return "sample", None
    if source.startswith(TFDS_PREFIX):
        return "tfds", source[len(TFDS_PREFIX) :]
    path = pathlib.Path(source).expanduser()
    if path.is_dir():
        return "folder", path
    if path.exists():
        raise ValueError(f"Data source {source!r} is a file; pass a folder with one sub-folder of images per class.")
    if os.sep in source or source.startswith("."):
        raise ValueError(
            f"Data folder {source!r} does not exist; pass an existing folder with one sub-folder per class, "
            "'sample', or 'tfds:NAME'."
        )
    return "tfds", source


def channel_stats(images):
    """Return the per-channel `(mean, std)` of up to `STATS_IMAGES` images.

    Args:
        images: `tf.data.Dataset` of `(image, label)` pairs, images
            `(height, width, channels)`.

    Returns:
        Two tuples of one Python float per channel.
    """
    channels = images.element_spec[0].shape[-1]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    for batch, _ in images.take(STATS_IMAGES).batch(500).as_numpy_iterator():
        pixels = batch.reshape(-1, channels).astype(np.float64)
        total += pixels.sum(axis=0)
        total_sq += (pixels**2).sum(axis=0)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    # A constant channel (say, a grayscale set) would divide by zero.
    std = np.where(std > 0, std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def decode_image(encoded, channels=3):
    """Decode one JPEG, PNG, GIF or BMP image into a uint8 tensor.

    Training and exported models decode with this function, so a served image
    goes through the same steps as a training image.

    Args:
        encoded: scalar string tensor, the file's bytes.
        channels: 3 for RGB or 1 for grayscale. Defaults to 3.

    Returns:
        A uint8 tensor of shape `(height, width, channels)`.
    """
    # channels=3 turns grayscale and palette images into RGB and drops an
    # alpha channel. Grayscale output is converted from RGB, because the BMP
    # decoder cannot output a single channel.
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    if channels == 1:
        image = tf.image.rgb_to_grayscale(image)
    return image


def resize_image(images, height, width):
    """Resize one image or a batch to `height` x `width` as training does.

    Images already at that size are returned unchanged. Others are resized
    with antialiased bilinear filtering and rounded to whole pixel values in
    0-255, the values a decoded image has.

    Args:
        images: tensor of shape `(h, w, c)` or `(batch, h, w, c)`, uint8 or
            float pixel values in 0-255.
        height: int, target height in pixels.
        width: int, target width in pixels.

    Returns:
        A tensor of the input's dtype with the target height and width.
    """
    def resized():
        image = tf.image.resize(images, (height, width), antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), images.dtype)

    same_size = tf.reduce_all(tf.shape(images)[-3:-1] == (height, width))
    output = tf.cond(same_size, lambda: images, resized)
    output.set_shape(images.shape[:-3].concatenate([height, width]).concatenate(images.shape[-1:]))
    return output


def _read_sample(validation_split, channels):
    metadata = json.loads((SAMPLE_DIR / "cifar10.json").read_text())
    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(record):
        example = tf.io.parse_single_example(record, features)
        return decode_image(example["image"], channels), tf.cast(example["label"], tf.int32)

    def split(name):
        records = tf.data.TFRecordDataset(str(SAMPLE_DIR / f"cifar10_{name}.tfrecord"))
        return _Split(records.map(parse, num_parallel_calls=tf.data.AUTOTUNE), metadata["splits"][name])

    if validation_split > 0:
        return split("train"), split("validation"), metadata["class_names"]
    train, validation = split("train"), split("validation")
    train.images = train.images.concatenate(validation.images)
    train.size += validation.size
    return train, None, metadata["class_names"]


def _read_folder(folder, validation_split, skip_bad_images, channels):
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        found = f"only '{class_dirs[0].name}'" if class_dirs else "none"
        raise ValueError(
            f"Data folder '{folder}' needs at least 2 class sub-folders, found {found}; expected one "
            "sub-folder of images per class, such as train/cat/0001.jpg and train/dog/0001.jpg."
        )

    # Hidden files such as macOS's "._photo.jpg" metadata are not images.
    files_per_class = [
        sorted(
            str(p)
            for p in class_dir.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        for class_dir in class_dirs
    ]
    bad = find_unreadable_images([path for files in files_per_class for path in files])
    if bad and not skip_bad_images:
        listing = "; ".join(f"{path} ({reason})" for path, reason in bad.items())
        raise ValueError(
            f"{len(bad)} file(s) in '{folder}' cannot be decoded as images: {listing}. "
            "Replace or remove them, or pass --skip-bad-images (skip_bad_images=True) to leave them out."
        )
    if bad:
        logger.warning("Leaving out %d file(s) that cannot be decoded as images: %s", len(bad), ", ".join(bad))

    train_files, val_files = [], []
    for class_dir, all_files in zip(class_dirs, files_per_class):
        if not all_files:
            raise ValueError(
                f"Class folder '{class_dir}' contains no images; expected files ending in "
                f"{', '.join(IMAGE_EXTENSIONS)}."
            )
        files = [path for path in all_files if path not in bad]
        if not files:
            raise ValueError(
                f"Class folder '{class_dir}' contains no readable images: all {len(all_files)} file(s) "
                "failed to decode."
            )
        held_out = math.ceil(len(files) * validation_split) if validation_split else 0
        if held_out >= len(files):
            raise ValueError(
                f"Class folder '{class_dir}' has {len(files)} image(s), too few to hold out "
                f"validation_split={validation_split} and still train; add images or lower the split."
            )
        cut = len(files) - held_out
        train_files.append(files[:cut])
        val_files.append(files[cut:])

    def split(files_per_class):
        # Interleave the classes, so the first images (those that
        # `channel_stats` reads) represent every class.
        order = sorted(
            (position, label, path)
            for label, files in enumerate(files_per_class)
            for position, path in enumerate(files)
        )
        files = [path for _, _, path in order]
        labels = [label for _, label, _ in order]
        pairs = tf.data.Dataset.from_tensor_slices((files, tf.constant(labels, tf.int32)))
        read = lambda path, label: (decode_image(tf.io.read_file(path), channels), label)  # noqa: E731
        return _Split(pairs.map(read, num_parallel_calls=tf.data.AUTOTUNE), len(files))

    validation = split(val_files) if validation_split else None
    return split(train_files), validation, [p.name for p in class_dirs]


def find_unreadable_images(paths):
    """Decode every file in `paths` once; return {path: reason} for failures.

    The decoder is the one the pipeline uses, `tf.io.decode_image`, so a file
    that passes here cannot stop training in the middle of an epoch.
    """

    def check(path):
        try:
            decode_image(tf.io.read_file(path))
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
            return path, _short_reason(error)
        return path, None

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = pool.map(check, paths, chunksize=256)
        return {path: reason for path, reason in results if reason is not None}


def _short_reason(error):
    # TensorFlow wraps the decoder's message in "{{function_node ...}}" and
    # "[Op:DecodeImage]"; only the message itself helps a user.
    message = re.sub(r"\{\{.*?\}\}|\[Op:.*?\]", "", getattr(error, "message", str(error)))
    return message.strip().split(". ")[0].strip(" .") or type(error).__name__


def _read_tfds(name, validation_split, data_dir, channels):
    import tensorflow_datasets as tfds  # imported here: it takes seconds

    percent = round(validation_split * 100)
    if validation_split and not 1 <= percent <= 99:
        raise ValueError(
            f"tensorflow-datasets splits are sliced in whole percent, so `validation_split` must be 0 or "
            f"between 0.005 and 0.985; received {validation_split!r}."
        )
    try:
        builder = tfds.builder(name, data_dir=data_dir) if name else None
    except (tfds.core.registered.DatasetNotFoundError, AssertionError, ValueError) as error:
        builder = None
        reason = f": {str(error).splitlines()[0]}" if str(error).strip() else ""
    else:
        reason = ""
    if builder is None:
        raise ValueError(
            f"Unknown tensorflow-datasets name {name!r}{reason}; pass a name from tfds.list_builders() such as "
            "'cifar10', or an existing folder."
        )

    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(
            f"tensorflow-datasets {name!r} is not an image classification data set with 'image' and 'label' "
            "features; pass one such as 'cifar10'."
        )

    try:
        builder.download_and_prepare()
    except (OSError, tfds.core.download.DownloadError) as error:
        raise DataUnavailableError(
            f"Could not download tensorflow-datasets {name!r} into {builder.data_dir}: "
            f"{type(error).__name__}. Check the network connection, or pass --data sample or a folder."
        ) from error

    label_feature = features["label"]
    train_split = f"train[:{100 - percent}%]" if percent else "train"
    val_split = f"train[{100 - percent}%:]" if percent else None

    def split(split_name):
        images = builder.as_dataset(split=split_name, as_supervised=True)
        images = images.map(
            lambda image, label: (_match_channels(image, channels), tf.cast(label, tf.int32)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        size = int(images.cardinality())
        if size < 0:
            size = builder.info.splits[split_name].num_examples
        return _Split(images, size)

    validation = split(val_split) if val_split else None
    return split(train_split), validation, list(label_feature.names)


def _match_channels(image, channels):
    if image.shape[-1] == 4:
        image = image[..., :3]
    if image.shape[-1] == 1 and channels == 3:
        return tf.image.grayscale_to_rgb(image)
    if image.shape[-1] == 3 and channels == 1:
        return tf.image.rgb_to_grayscale(image)
    return image


def _image_size(images, image_size):
    if image_size is not None:
        return image_size, image_size
    for image, _ in images.take(1):
        return int(image.shape[0]), int(image.shape[1])
    raise ValueError("The training split contains no images.")


def _resizer(height, width, channels):
    def resize(image, label):
        image = resize_image(image, height, width)
        image.set_shape([height, width, channels])
        return image, label

    return resize


def _batch(split, batch_size, shuffle=False, augment=False, seed=0):
    height, width, channels = split.images.element_spec[0].shape
    # TFRecord files do not state their length; asserting it lets Keras show
    # the steps per epoch.
    images = split.images.apply(tf.data.experimental.assert_cardinality(split.size))
    if split.size * height * width * channels <= CACHE_LIMIT_BYTES:
        images = images.cache()
    if shuffle:
        images = images.shuffle(min(split.size, 50_000), seed=seed, reshuffle_each_iteration=True)

    to_float = lambda image, label: (tf.cast(image, tf.float32), label)  # noqa: E731
    augmenter = _augmenter(height, width, channels, seed)
    images = images.map(augmenter if augment else to_float, num_parallel_calls=tf.data.AUTOTUNE)
    # Full training batches only: a smaller last batch would make JAX and
    # XLA compile the train step a second time.
    drop_remainder = shuffle and split.size >= batch_size
    return images.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def _augmenter(height, width, channels, seed):
    pad_y, pad_x = max(1, height // 8), max(1, width // 8)

    def augment(image, label):
        image = tf.cast(image, tf.float32)
        image = tf.pad(image, [(pad_y, pad_y), (pad_x, pad_x), (0, 0)])
        image = tf.image.random_crop(image, (height, width, channels), seed=seed)
        image = tf.image.random_flip_left_right(image, seed=seed)
        return image, label

    return augment
