"""The `keras-resnet` command: parses arguments and calls the library.

Keras reads `KERAS_BACKEND` once, when it is first imported, and importing
this module imports Keras through the package. When `--backend` names
another backend, the command therefore starts itself again with
`KERAS_BACKEND` set, before any work is done.
"""

import argparse
import json
import logging
import os
import sys

BACKENDS = ("tensorflow", "jax", "torch")


def main(argv=None):
    """Run the command line; return the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        _select_backend(args.backend, argv)
        logging.getLogger("keras_resnet").info("Keras %s with the %s backend", *_keras_version_and_backend())
        return args.run(args)
    except KeyboardInterrupt:
        print("Interrupted; rerun the same command to resume from the last finished epoch.", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, RuntimeError, FloatingPointError) as error:
        # Bad input, an unavailable data set, a finished run in the way, or a
        # NaN loss: one line, no traceback.
        print(f"keras-resnet: error: {_option_names(str(error))}", file=sys.stderr)
        return 2


# Library messages name Python arguments; the command line has options.
_OPTIONS = {
    f"`{name}`": f"--{name.replace('_', '-')}"
    for name in (
        "depth", "family", "width", "epochs", "batch_size", "image_size", "channels", "validation_split",
        "learning_rate", "weight_decay", "warmup_epochs", "seed",
    )
}


def _option_names(message):
    for argument, option in _OPTIONS.items():
        message = message.replace(argument, option)
    return message


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-resnet", description="Residual networks for Keras 3 on TensorFlow, JAX and PyTorch."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a ResNet with model.fit", description=_TRAIN_HELP)
    train.add_argument("--depth", type=int, default=20, help="network depth (default: 20, the CIFAR ResNet-20)")
    train.add_argument(
        "--family",
        choices=("imagenet", "cifar"),
        default=None,
        help="network family; by default the ImageNet depths 18-200 build ImageNet networks and other 6n+2 "
        "depths CIFAR networks",
    )
    train.add_argument("--width", type=float, default=1.0, help="width multiplier of every layer (default: 1.0)")
    train.add_argument("--epochs", type=int, default=15, help="number of epochs (default: 15)")
    train.add_argument("--batch-size", type=int, default=128, help="images per step (default: 128)")
    train.add_argument(
        "--data",
        default="sample",
        help="'sample' (real CIFAR-10 images shipped with the package, the default), a folder with one "
        "sub-folder per class, or tfds:NAME such as tfds:cifar10",
    )
    train.add_argument("--image-size", type=int, default=None, help="resize images to this square size in pixels")
    train.add_argument(
        "--channels", type=int, choices=(1, 3), default=3, help="3 for RGB (default) or 1 for grayscale"
    )
    train.add_argument(
        "--validation-split",
        type=float,
        default=0.1,
        help="share of each class held out for validation (default: 0.1; 0 trains on everything)",
    )
    train.add_argument(
        "--learning-rate", type=float, default=0.1, help="peak learning rate at batch size 128 (default: 0.1)"
    )
    train.add_argument(
        "--weight-decay",
        type=float,
        default=5e-3,
        help="decoupled weight decay of convolution and dense kernels (default: 5e-3, about an L2 penalty of "
        "5e-4 under momentum 0.9)",
    )
    train.add_argument("--warmup-epochs", type=float, default=1.0, help="epochs of linear warm-up (default: 1)")
    train.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initial weights, shuffling and augmentation (default: 0); runs on a CPU are not "
        "bit-for-bit repeatable, because parallel data loading and multithreaded kernels vary the order",
    )
    train.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out files of a --data folder that cannot be decoded, with a warning listing them "
        "(default: stop before training and name them)",
    )
    train.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)",
    )
    train.add_argument(
        "--output",
        default=None,
        help="run folder (default: runs/<model name> such as runs/resnet20, or runs/resnet20-2 and so on when "
        "that one contains a finished run)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace a finished run in --output")
    train.set_defaults(run=_train)

    convert = commands.add_parser(
        "convert",
        help="convert torchvision or keras.applications ResNet weights into a .keras file",
        description="Convert a torchvision ResNet state dict (.pth, .pt) or a keras.applications ResNet saved as "
        ".keras into the matching keras_resnet network, saved as .keras.",
    )
    convert.add_argument("source", help="torchvision state dict (.pth, .pt) or keras.applications model (.keras)")
    convert.add_argument("output", help="the .keras file to write")
    convert.add_argument(
        "--image-size", type=int, default=None, help="square input size in pixels (default: 224, or the source's)"
    )
    convert.add_argument(
        "--logits", action="store_true", help="end with logits instead of softmax (torchvision models return logits)"
    )
    convert.add_argument(
        "--backend", choices=BACKENDS, default=None, help="Keras backend (default: $KERAS_BACKEND, else tensorflow)"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    convert.set_defaults(run=_convert)

    models = commands.add_parser("models", help="list the named variants that build() accepts")
    models.add_argument("--backend", choices=BACKENDS, default=None, help=argparse.SUPPRESS)
    models.set_defaults(run=_list_models)
    return parser


_TRAIN_HELP = (
    "Train a ResNet with SGD, Nesterov momentum, warm-up and cosine decay. Writes model.keras (best "
    "validation accuracy), history.csv, curves.png, metrics.json and run_config.json into the run folder. "
    "Rerunning an interrupted command resumes from its last finished epoch."
)


def _select_backend(requested, argv):
    import keras

    backend = requested or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if backend not in BACKENDS:
        raise ValueError(f"KERAS_BACKEND must be one of {', '.join(BACKENDS)}; received {backend!r}.")
    if backend == keras.backend.backend():
        return
    if os.environ.get(_RESTARTED):
        raise RuntimeError(f"Keras started with the {keras.backend.backend()!r} backend, not {backend!r}.")
    environment = dict(os.environ, KERAS_BACKEND=backend, **{_RESTARTED: "1"})
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "keras_resnet.cli", *argv], environment)


def _keras_version_and_backend():
    import keras

    return keras.__version__, keras.backend.backend()


# Set in the environment of a restarted command, so that it cannot restart
# itself again.
_RESTARTED = "KERAS_RESNET_CLI_RESTARTED"


def _train(args):
    from keras_resnet import training

    cfg = training.TrainConfig(
        depth=args.depth,
        family=args.family,
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        data=args.data,
        image_size=args.image_size,
        channels=args.channels,
        validation_split=args.validation_split,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        seed=args.seed,
        skip_bad_images=args.skip_bad_images,
    )
    metrics = training.train(cfg, output=args.output, overwrite=args.overwrite)
    _print_summary(metrics)
    return 0


def _convert(args):
    from keras_resnet import convert

    build_kwargs = {}
    if args.image_size is not None:
        build_kwargs["input_shape"] = (args.image_size, args.image_size, 3)
    if args.logits:
        build_kwargs["classifier_activation"] = None
    model = convert.convert_file(args.source, args.output, overwrite=args.overwrite, **build_kwargs)
    print(f"Wrote {args.output}: {model.name}, {model.count_params():,} parameters.")
    return 0


def _list_models(args):
    import keras_resnet

    print("\n".join(keras_resnet.available_models()))
    return 0


def _print_summary(metrics):
    val = metrics["val_accuracy"]
    accuracy = f"validation accuracy {val:.4f}" if val is not None else "no validation split"
    epochs = f"{metrics['epochs']} epoch{'s' if metrics['epochs'] != 1 else ''}"
    # A resumed run with no epochs left has trained nothing in this process.
    speed = metrics["images_per_second"]
    speed = f"{speed:.0f} images/s" if speed is not None else "no epochs left to train in this process"
    print(
        f"\n{metrics['model']} ({metrics['params']:,} trainable parameters) trained {epochs} on "
        f"{metrics['train_images']:,} images under {metrics['backend']}: {accuracy} "
        f"(best epoch {metrics['best_epoch']}), {metrics['train_seconds']:.1f} s of training, "
        f"{speed}. Files in {metrics['run_dir']}/."
    )
    print(json.dumps({k: metrics[k] for k in ("val_accuracy", "val_loss", "epochs", "backend", "train_seconds")}))


if __name__ == "__main__":
    sys.exit(main())
