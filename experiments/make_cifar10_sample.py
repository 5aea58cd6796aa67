"""Write the CIFAR-10 sample that ships inside keras_resnet.

The sample contains real CIFAR-10 training images as their original JPEG
bytes: images 0000-0399 of every class for training and 4900-4999 for
validation. The validation part thus comes from the customary hold-out of
the last 500 images per class and never overlaps the training part.

Usage:
    python experiments/make_cifar10_sample.py PATH/cifar10-train-jpg.tar.gz

The archive contains `train/<class>/<NNNN>.jpg` for ten classes with 5,000
images each.
"""

import argparse
import json
import pathlib
import tarfile

import tensorflow as tf

TRAIN_INDICES = range(0, 400)
VALIDATION_INDICES = range(4900, 5000)
OUTPUT_DIR = pathlib.Path(__file__).resolve().parent.parent / "keras_resnet" / "sample_data"


def read_archive(path):
    """Return {class_name: {index: jpeg_bytes}} for the wanted indices."""
    selected = set(TRAIN_INDICES) | set(VALIDATION_INDICES)
    images = {}
    with tarfile.open(path) as archive:
        for member in archive:
            parts = pathlib.PurePosixPath(member.name).parts
            if not member.isfile() or len(parts) != 3 or parts[0] != "train":
                continue
            index = int(pathlib.PurePosixPath(parts[2]).stem)
            if index in selected:
                images.setdefault(parts[1], {})[index] = archive.extractfile(member).read()
    return images


def write_split(path, images, class_names, indices):
    count = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for index in indices:
            for label, name in enumerate(class_names):
                feature = {
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[images[name][index]])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
                count += 1
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", help="path of cifar10-train-jpg.tar.gz")
    args = parser.parse_args()

    images = read_archive(args.archive)
    class_names = sorted(images)
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    counts = {
        "train": write_split(OUTPUT_DIR / "cifar10_train.tfrecord", images, class_names, TRAIN_INDICES),
        "validation": write_split(
            OUTPUT_DIR / "cifar10_validation.tfrecord", images, class_names, VALIDATION_INDICES
        ),
    }
    metadata = {
        "description": "CIFAR-10 (Krizhevsky, 2009) training images as JPEG; "
        "train: images 0-399 of each class, validation: images 4900-4999 of each class.",
        "class_names": class_names,
        "image_shape": [32, 32, 3],
        "splits": counts,
    }
    (OUTPUT_DIR / "cifar10.json").write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"wrote {counts} to {OUTPUT_DIR}")


if __name__ == "__main__":
    main()
