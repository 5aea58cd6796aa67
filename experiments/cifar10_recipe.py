"""CIFAR-10 recipe: validation accuracy against minutes of training on real CIFAR-10.

Trains on the 50,000 CIFAR-10 training images (a folder of class folders, or
the shared `cifar10-train-jpg.tar.gz`, unpacked once under build/) and holds
out the last 10 % of each class, the customary 5,000-image validation split.
`--full` trains on all 50,000 images instead, for a final model.

Two implementations, run one at a time so that each has the whole machine:

- `keras_resnet` (default): `keras_resnet.train` with the settings given
  here, ResNet-20 by default.
- `plain_keras`: a plain Keras reference recipe. It trains a ResNet-20
  written with stock layers as a careful Keras user would, with SGD 0.1,
  Nesterov momentum, warm-up and cosine decay, and L2 weight decay 5e-4.
  It uses pad-and-crop and flip, batch 128, float32 and `compile()` defaults.

Each run writes `<name>.csv` under --output with one row per epoch: minutes
since `fit` started (validation included), validation and training accuracy.
`--plot A.csv B.csv` draws the curves of earlier runs into one PNG.

Usage:
    python experiments/cifar10_recipe.py --data ../shared/data/cifar10-train-jpg.tar.gz --epochs 30
    python experiments/cifar10_recipe.py --impl plain_keras --data build/cifar10/train --epochs 20
    python experiments/cifar10_recipe.py --plot experiments/results/cifar10-*.csv
"""

import argparse
import csv
import datetime
import os
import pathlib
import sys
import tarfile
import tempfile
import time

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
UNPACK_DIR = pathlib.Path("build") / "cifar10"


def unpacked(data):
    """Return the class-folder root of `data`, unpacking a .tar.gz once."""
    path = pathlib.Path(data)
    if not path.name.endswith((".tar.gz", ".tgz")):
        return path
    target = UNPACK_DIR / "train"
    if not target.is_dir():
        UNPACK_DIR.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=".unpack-", dir=UNPACK_DIR))
        with tarfile.open(path) as archive:
            archive.extractall(staging, filter="data")
        (staging / "train").rename(target)
        staging.rmdir()
    return target


class MinutesLog:
    """A Keras callback factory that appends (epoch, minutes, accuracies) rows to a CSV file."""

    @staticmethod
    def create(path):
        import keras

        class _Log(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start = time.perf_counter()
                with open(path, "w", newline="") as f:
                    csv.writer(f).writerow(["epoch", "minutes", "val_accuracy", "accuracy", "loss"])

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                minutes = (time.perf_counter() - self.start) / 60
                row = [epoch + 1, f"{minutes:.3f}", logs.get("val_accuracy", ""), logs.get("accuracy"), logs.get("loss")]
                with open(path, "a", newline="") as f:
                    csv.writer(f).writerow(row)
                print(f"epoch {epoch + 1}: {minutes:.1f} min, val_accuracy {logs.get('val_accuracy')}", flush=True)

        return _Log()


def run_keras_resnet(args, folder, log):
    from keras_resnet import training

    cfg = training.TrainConfig(
        depth=args.depth,
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        data=str(folder),
        validation_split=0.0 if args.full else args.validation_split,
        precision=args.precision,
        verbose=2,
    )
    output = pathlib.Path(args.output) / f"{args.name}-run"
    return training.train(cfg, output=output, callbacks=[MinutesLog.create(log)])


def _split_files(folder, validation_split):
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    train, validation = [], []
    for label, name in enumerate(classes):
        files = sorted(str(p) for p in (folder / name).iterdir() if p.is_file())
        held_out = round(len(files) * validation_split)
        train += [(f, label) for f in files[: len(files) - held_out]]
        validation += [(f, label) for f in files[len(files) - held_out :]]
    return train, validation


def run_plain_keras(args, folder, log):
    # The reference a Keras user would write without this library.
    import keras
    import tensorflow as tf

    from keras_resnet.benchmark import plain_keras_resnet

    keras.utils.set_random_seed(0)
    train_files, validation_files = _split_files(folder, 0.0 if args.full else args.validation_split)

    def dataset(pairs):
        files, labels = zip(*pairs)
        ds = tf.data.Dataset.from_tensor_slices((list(files), list(labels)))
        def decode(path, label):
            return tf.cast(tf.io.decode_jpeg(tf.io.read_file(path), channels=3), "float32"), label

        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).cache()

    def augment(image, label):
        image = tf.image.pad_to_bounding_box(image, 4, 4, 40, 40)
        image = tf.image.random_crop(image, (32, 32, 3))
        return tf.image.random_flip_left_right(image), label

    train = dataset(train_files).shuffle(len(train_files)).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    train = train.batch(args.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    validation = None
    if validation_files:
        validation = dataset(validation_files).batch(256).prefetch(tf.data.AUTOTUNE)

    # PyTorch-style weight decay 5e-4 (added to the gradient) is a Keras L2 penalty of 2.5e-4.
    model = plain_keras_resnet("resnet20", 32, kernel_regularizer=keras.regularizers.L2(2.5e-4))
    steps = len(train_files) // args.batch_size
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=(args.epochs - 1) * steps, warmup_target=0.1, warmup_steps=steps
    )
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(train, validation_data=validation, epochs=args.epochs, callbacks=[MinutesLog.create(log)], verbose=2)


def plot(paths, output):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for path in paths:
        with open(path, newline="") as f:
            rows = [row for row in csv.DictReader(f) if row["val_accuracy"]]
        minutes = [float(row["minutes"]) for row in rows]
        accuracy = [100 * float(row["val_accuracy"]) for row in rows]
        axes.plot(minutes, accuracy, marker=".", label=f"{pathlib.Path(path).stem} (best {max(accuracy):.2f} %)")
    axes.axhline(91.25, color="grey", linestyle="--", linewidth=1, label="91.25 % (He et al. 2016, ResNet-20)")
    axes.axvline(45, color="grey", linestyle=":", linewidth=1, label="45 minutes")
    axes.set_xlabel("minutes of training (validation included)")
    axes.set_ylabel("validation accuracy (%), 5,000 held-out images")
    axes.set_ylim(40, 95)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    print(f"wrote {output}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10-train-jpg.tar.gz", help="class folders or the .tar.gz")
    parser.add_argument("--impl", choices=("keras_resnet", "plain_keras"), default="keras_resnet")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precision", default="auto", help="keras_resnet only (default: auto)")
    parser.add_argument(
        "--validation-split", type=float, default=0.1, help="share of each class held out, the last files (default: 0.1)"
    )
    parser.add_argument("--full", action="store_true", help="train on all 50,000 images, no validation split")
    parser.add_argument("--name", default=None, help="name of the CSV file (default: cifar10-<impl>-<time>)")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--plot", nargs="+", metavar="CSV", help="plot earlier runs instead of training")
    args = parser.parse_args(argv)

    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M")
    if args.plot:
        plot(args.plot, output / f"cifar10-accuracy-per-minute-{stamp}.png")
        return 0
    args.name = args.name or f"cifar10-{args.impl}-{stamp}"
    log = output / f"{args.name}.csv"
    if log.exists():
        parser.error(f"{log} exists; pass another --name.")
    start = time.perf_counter()
    folder = unpacked(args.data)
    print(f"data ready in {folder} after {time.perf_counter() - start:.0f} s", flush=True)
    if args.impl == "keras_resnet":
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        print(run_keras_resnet(args, folder, log))
    else:
        run_plain_keras(args, folder, log)
    print(f"wrote {log}; whole run {(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
