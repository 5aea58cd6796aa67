import io
import logging

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras
from keras_resnet import data

# The pipelines are tf.data whatever the Keras backend, so these tests run in
# the tensorflow run of the suite only. test_training.py feeds a pipeline to
# model.fit under every backend.
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.data only, backend-independent; runs under tensorflow"
)

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_images(folder, counts, size=(20, 24), mode="RGB", suffix=".jpg"):
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (folder / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).convert(mode).save(folder / name / f"{i:03d}{suffix}")


def labels_of(dataset):
    return np.concatenate([y for _, y in dataset.as_numpy_iterator()])


def test_sample_splits():
    ds = data.load_datasets("sample", batch_size=100)
    assert ds.class_names == CIFAR10_CLASSES
    assert (ds.train_size, ds.validation_size) == (4000, 1000)
    assert ds.image_shape == (32, 32, 3)
    assert np.bincount(labels_of(ds.validation)).tolist() == [100] * 10

    images, labels = next(ds.train.as_numpy_iterator())
    assert images.shape == (100, 32, 32, 3)
    assert images.dtype == np.float32
    assert labels.dtype == np.int32
    assert images.min() >= 0
    assert images.max() <= 255


def test_sample_channel_stats_are_cifar_like():
    ds = data.load_datasets("sample")
    # CIFAR-10's training set has channel means of about 125, 123 and 114.
    np.testing.assert_allclose(ds.mean, (125.3, 123.0, 113.9), atol=3)
    assert all(55 < s < 75 for s in ds.std)


def test_augmentation_only_on_training():
    ds = data.load_datasets("sample", batch_size=50, validation_split=0.1, seed=1)
    first = next(ds.validation.as_numpy_iterator())[0]
    again = next(ds.validation.as_numpy_iterator())[0]
    np.testing.assert_array_equal(first, again)

    plain = data.load_datasets("sample", batch_size=4000, augment=False)
    augmented = data.load_datasets("sample", batch_size=4000, augment=True)
    a = next(plain.train.as_numpy_iterator())
    b = next(augmented.train.as_numpy_iterator())
    assert not np.array_equal(np.sort(a[0].ravel()), np.sort(b[0].ravel()))
    # The zero padding shows up as black pixels in some crops.
    assert (b[0] == 0).all(axis=-1).mean() > (a[0] == 0).all(axis=-1).mean()


def test_folder_holds_out_last_files_per_class(tmp_path):
    write_images(tmp_path, {"cat": 10, "dog": 20})
    ds = data.load_datasets(str(tmp_path), batch_size=4, validation_split=0.2, image_size=16)
    assert ds.class_names == ["cat", "dog"]
    assert (ds.train_size, ds.validation_size) == (24, 6)
    assert np.bincount(labels_of(ds.validation)).tolist() == [2, 4]
    assert ds.image_shape == (16, 16, 3)
    images, _ = next(ds.train.as_numpy_iterator())
    assert images.shape == (4, 16, 16, 3)


def test_folder_keeps_first_image_size(tmp_path):
    write_images(tmp_path, {"a": 3, "b": 3}, size=(20, 24))
    ds = data.load_datasets(tmp_path, batch_size=2, validation_split=0)
    assert ds.image_shape == (24, 20, 3)
    assert ds.validation is None


def test_folder_converts_grayscale_and_rgba(tmp_path):
    write_images(tmp_path / "data", {"gray": 2}, mode="L", suffix=".png")
    write_images(tmp_path / "more", {"rgba": 2}, mode="RGBA", suffix=".png")
    (tmp_path / "more" / "rgba").rename(tmp_path / "data" / "rgba")
    ds = data.load_datasets(tmp_path / "data", batch_size=4, validation_split=0, augment=False)
    images, labels = next(ds.train.as_numpy_iterator())
    assert images.shape == (4, 24, 20, 3)
    gray = images[labels == 0]
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])


def test_missing_folder_message(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="does not exist") as info:
        data.load_datasets(str(missing))
    assert str(missing) in str(info.value)


def test_file_instead_of_folder_message(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="is a file") as info:
        data.load_datasets(str(path))
    assert str(path) in str(info.value)


def test_empty_folder_message(tmp_path):
    with pytest.raises(ValueError, match="found none") as info:
        data.load_datasets(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_class_without_images_message(tmp_path):
    write_images(tmp_path, {"cat": 3})
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="contains no images") as info:
        data.load_datasets(str(tmp_path))
    assert "dog" in str(info.value)
    assert ".jpg" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, received",
    [
        ({"validation_split": 1.0}, "1.0"),
        ({"validation_split": -0.1}, "-0.1"),
        ({"batch_size": 0}, "0"),
        ({"image_size": -3}, "-3"),
        ({"channels": 4}, "4"),
        ({"channels": 2}, "2"),
    ],
)
def test_invalid_argument_message(kwargs, received):
    with pytest.raises(ValueError) as info:
        data.load_datasets("sample", **kwargs)
    assert received in str(info.value)


def test_split_too_large_for_class(tmp_path):
    write_images(tmp_path, {"cat": 1, "dog": 3})
    with pytest.raises(ValueError, match="too few") as info:
        data.load_datasets(str(tmp_path), validation_split=0.5)
    assert "cat" in str(info.value)


def test_tfds_source_with_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        ds = data.load_datasets("tfds:cifar10", batch_size=8, validation_split=0.25, data_dir=str(tmp_path))
    # Offline, the mock has cifar10's features but not its label names.
    assert len(ds.class_names) == 10
    # The mock yields `num_examples` for every split, sliced or not.
    assert (ds.train_size, ds.validation_size) == (40, 40)
    images, labels = next(ds.train.as_numpy_iterator())
    assert images.shape == (8, 32, 32, 3)
    assert labels.dtype == np.int32


def test_unknown_tfds_name_message():
    with pytest.raises(ValueError, match="no_such_dataset_xyz") as info:
        data.load_datasets("tfds:no_such_dataset_xyz")
    assert "cifar10" in str(info.value)


def test_tfds_offline_gives_clear_error(tmp_path, monkeypatch):
    """With no network, the download fails with a message, not a traceback."""
    from tensorflow_datasets.core.download import downloader

    # tensorflow-datasets retries a failed download 10 times with back-off
    # (about 200 s); one attempt shows the same failure.
    monkeypatch.setattr(downloader, "MAX_RETRIES", 0)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with pytest.raises(data.DataUnavailableError, match="Could not download") as info:
        data.load_datasets("tfds:cifar10", data_dir=str(tmp_path))
    assert "'cifar10'" in str(info.value)


def write_odd_images(folder):
    """Write one image per unusual format into `folder`; return the names."""
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))
    folder.mkdir(parents=True)
    image.convert("L").save(folder / "gray.png")
    image.convert("LA").save(folder / "gray_alpha.png")
    image.convert("RGBA").save(folder / "rgba.png")
    image.convert("P").save(folder / "palette.png")
    image.convert("CMYK").save(folder / "cmyk.jpg")
    image.save(folder / "bitmap.bmp")
    image.save(folder / "still.gif")
    Image.fromarray(rng.integers(0, 65535, (24, 20), dtype=np.uint16)).save(folder / "sixteen_bit.png")
    return sorted(p.name for p in folder.iterdir())


def write_bad_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((24, 20, 3), np.uint8)).save(buffer, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "notes.jpg").write_text("this is text, not a JPEG")
    return ["empty.jpg", "truncated.jpg", "notes.jpg"]


def test_odd_formats_become_rgb(tmp_path):
    names = write_odd_images(tmp_path / "data" / "odd")
    write_images(tmp_path / "data", {"plain": 2})
    ds = data.load_datasets(tmp_path / "data", batch_size=4, validation_split=0, augment=False)
    assert ds.train_size == len(names) + 2
    seen = 0
    for images, _ in ds.train.as_numpy_iterator():
        assert images.shape[1:] == (24, 20, 3)
        assert np.isfinite(images).all()
        seen += len(images)
    assert seen == 8  # full batches of 4 out of 10 images


def test_bad_files_are_named_before_training(tmp_path):
    write_images(tmp_path, {"cat": 3, "dog": 3})
    bad = write_bad_files(tmp_path / "dog")
    with pytest.raises(ValueError, match="--skip-bad-images") as info:
        data.load_datasets(tmp_path)
    message = str(info.value)
    for name in bad:
        assert str(tmp_path / "dog" / name) in message
    assert "Input is empty" in message


def test_skip_bad_images_warns_and_trains(tmp_path, caplog):
    write_images(tmp_path, {"cat": 3, "dog": 3})
    bad = write_bad_files(tmp_path / "dog")
    with caplog.at_level(logging.WARNING, logger="keras_resnet.data"):
        ds = data.load_datasets(tmp_path, batch_size=2, validation_split=0, skip_bad_images=True)
    assert ds.train_size == 6
    for name in bad:
        assert name in caplog.text
    batches = list(ds.train.as_numpy_iterator())
    assert sum(len(labels) for _, labels in batches) == 6


def test_class_with_only_bad_files(tmp_path):
    write_images(tmp_path, {"cat": 3})
    write_bad_files(tmp_path / "dog")
    with pytest.raises(ValueError, match="no readable images") as info:
        data.load_datasets(tmp_path, skip_bad_images=True)
    assert str(tmp_path / "dog") in str(info.value)


def test_grayscale_pipeline(tmp_path):
    ds = data.load_datasets("sample", batch_size=8, channels=1)
    assert ds.image_shape == (32, 32, 1)
    assert len(ds.mean) == 1
    images, _ = next(ds.train.as_numpy_iterator())
    assert images.shape == (8, 32, 32, 1)

    write_odd_images(tmp_path / "data" / "odd")
    write_images(tmp_path / "data", {"plain": 2})
    ds = data.load_datasets(tmp_path / "data", batch_size=5, channels=1, validation_split=0)
    images, _ = next(ds.train.as_numpy_iterator())
    assert images.shape == (5, 24, 20, 1)


def test_sample_without_validation_trains_on_all():
    ds = data.load_datasets("sample", validation_split=0)
    assert ds.validation is None
    assert ds.train_size == 5000
    assert sum(len(y) for _, y in ds.train.as_numpy_iterator()) == 5000 // 128 * 128


def test_single_class_folder_message(tmp_path):
    write_images(tmp_path, {"cat": 3})
    with pytest.raises(ValueError, match="at least 2 class") as info:
        data.load_datasets(tmp_path)
    assert "'cat'" in str(info.value)


def test_hidden_files_are_ignored(tmp_path):
    write_images(tmp_path, {"cat": 2, "dog": 2})
    (tmp_path / "cat" / "._0.jpg").write_bytes(b"\x00\x05\x16\x07 macOS metadata")
    ds = data.load_datasets(tmp_path, validation_split=0)
    assert ds.train_size == 4


@pytest.mark.parametrize("split", [0.001, 0.999])
def test_tfds_split_must_be_whole_percent(split):
    with pytest.raises(ValueError, match="whole percent") as info:
        data.load_datasets("tfds:cifar10", validation_split=split)
    assert str(split) in str(info.value)


def test_channels_rejects_bool():
    with pytest.raises(ValueError, match="True"):
        data.load_datasets("sample", channels=True)
