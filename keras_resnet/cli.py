"""The `keras-resnet` command: parses arguments and calls the library.

Keras reads `KERAS_BACKEND` once, when it is first imported, and importing
this module imports Keras through the package. When `--backend` names
another backend, the command therefore starts itself again with
`KERAS_BACKEND` set, before any work is done.
"""

import argparse
import json
import logging
import math
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
        print("Interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError, FloatingPointError) as error:
        # Bad input, a file system error (missing, in the way, not writable),
        # an unavailable data set, or a NaN loss: one line, no traceback.
        print(f"keras-resnet: error: {_option_names(str(error))}", file=sys.stderr)
        return 2


# Library messages name Python arguments; the command line has options.
_OPTIONS = {
    f"`{name}`": f"--{name.replace('_', '-')}"
    for name in (
        "depth", "family", "width", "epochs", "batch_size", "image_size", "channels", "validation_split",
        "learning_rate", "weight_decay", "warmup_epochs", "seed", "tuner", "max_trials", "depths", "widths",
        "learning_rate_range", "weight_decay_range", "steps_per_epoch", "validation_steps", "max_minutes",
        "max_params", "max_flops", "max_latency_ms", "latency_batch_size", "oracle_ip", "oracle_port",
        "version", "top", "overwrite", "output", "precision", "model", "rounds", "steps", "agreement_images",
    )
}


def _option_names(message):
    message = message.replace("`variant`", "--model")
    for argument, option in _OPTIONS.items():
        message = message.replace(argument, option)
    return message


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-resnet", description="Residual networks for Keras 3 on TensorFlow, JAX and PyTorch."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a ResNet with model.fit", description=_TRAIN_HELP)
    train.add_argument(
        "--model",
        default=None,
        help="a named variant such as resnet50d, preresnet110 or wrn16_8 (see `keras-resnet models`); "
        "instead of --depth and --family",
    )
    train.add_argument(
        "--depth", type=int, default=None, help="network depth (default: 20, the CIFAR ResNet-20, unless --model)"
    )
    train.add_argument(
        "--family",
        choices=("imagenet", "cifar"),
        default=None,
        help="network family; by default the ImageNet depths 18-200 build ImageNet networks and other 6n+2 "
        "depths CIFAR networks",
    )
    train.add_argument("--width", type=float, default=1.0, help="width multiplier of every layer (default: 1.0)")
    train.add_argument("--epochs", type=int, default=15, help="number of epochs (default: 15)")
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
    train.add_argument(
        "--output",
        default=None,
        help="run folder (default: runs/<model name> such as runs/resnet20, or runs/resnet20-2 and so on when "
        "that one contains a finished run)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace a finished run in --output")
    train.add_argument(
        "--precision",
        choices=("float32", "mixed_bfloat16", "mixed_float16", "auto"),
        default="float32",
        help="dtype policy of the layers (default: float32); auto picks mixed_bfloat16 on a CPU with bfloat16 "
        "instructions and no GPU, where it trained CIFAR ResNet-20 1.4-2x faster",
    )
    train.add_argument(
        "--jit-compile",
        choices=("auto", "true", "false"),
        default="auto",
        help="XLA compilation of the training step (default: auto, Keras's choice for the backend); false "
        "avoids compiling the deepest models such as preresnet1001 under JAX, which had reached 19 GB of memory when "
        "it was stopped",
    )
    _add_data_arguments(train)
    train.set_defaults(run=_train)

    tune = commands.add_parser("tune", help="search depth, width and training settings with Keras Tuner", description=_TUNE_HELP)
    _add_tune_arguments(tune)
    _add_data_arguments(tune)
    tune.set_defaults(run=_tune)

    export = commands.add_parser("export", help="export a .keras model for TF Serving or ONNX", description=_EXPORT_HELP)
    export.add_argument("model", help="the .keras file, e.g. runs/resnet20/model.keras")
    export.add_argument("--name", help="model name under --base-dir (required for a SavedModel)")
    export.add_argument(
        "--format", choices=FORMATS, default="saved_model", help="saved_model (default) or onnx"
    )
    export.add_argument(
        "--base-dir", default=None, help="TF Serving base folder of the models (default: saved_models)"
    )
    export.add_argument(
        "--version", type=int, default=None, help="version number (default: one more than the highest there)"
    )
    export.add_argument("--output", default=None, help="ONNX file (default: the model path with .onnx)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing version or ONNX file")
    # Export builds its serving graph with TensorFlow whatever the model was
    # trained under, so the command starts under the TensorFlow backend.
    export.set_defaults(run=_export, backend="tensorflow")

    predict = commands.add_parser(
        "predict", help="classify image files", description="Print the top classes of each image file."
    )
    predict.add_argument("model", help="a .keras file or an exported SavedModel folder (saved_models/NAME[/VERSION])")
    predict.add_argument("images", nargs="+", help="image files (JPEG, PNG, GIF or BMP)")
    predict.add_argument("--top", type=int, default=5, help="classes to show per image (default: 5)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.add_argument(
        "--backend", choices=BACKENDS, default=None, help="Keras backend for a .keras model (default: $KERAS_BACKEND)"
    )
    predict.set_defaults(run=_predict)

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

    bench = commands.add_parser(
        "benchmark",
        help="measure training, inference and input-pipeline speed against plain Keras and PyTorch",
        description="Measure images/s and peak memory of keras_resnet, plain Keras and pure PyTorch side by side, "
        "each contender in its own process, in turns; print the ratios and write JSON and PNG results.",
    )
    from keras_resnet import benchmark

    benchmark.add_arguments(bench)
    bench.set_defaults(run=_benchmark, backend=None)

    models = commands.add_parser("models", help="list the named variants that build() accepts")
    models.add_argument("--backend", choices=BACKENDS, default=None, help=argparse.SUPPRESS)
    models.set_defaults(run=_list_models)
    return parser


FORMATS = ("saved_model", "onnx")
_EXPORT_HELP = (
    "Export a .keras model as a SavedModel in BASE_DIR/NAME/VERSION, the layout TF Serving watches, with "
    "signatures for encoded images (serving_default) and pixel tensors (predict_pixels, predict_pixels_uint8), "
    "or as an ONNX file. An existing version is never replaced without --overwrite."
)


def _add_data_arguments(parser):
    """Add the data and recipe options that train and tune share."""
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (default: 128)")
    parser.add_argument(
        "--data",
        default="sample",
        help="'sample' (real CIFAR-10 images shipped with the package, the default), a folder with one "
        "sub-folder per class, or tfds:NAME such as tfds:cifar10",
    )
    parser.add_argument("--image-size", type=int, default=None, help="resize images to this square size in pixels")
    parser.add_argument(
        "--channels", type=int, choices=(1, 3), default=3, help="3 for RGB (default) or 1 for grayscale"
    )
    parser.add_argument(
        "--validation-split",
        type=float,
        default=0.1,
        help="share of each class held out for validation (default: 0.1; 0 trains on everything)",
    )
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="epochs of linear warm-up (default: 1)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initial weights, shuffling and augmentation (default: 0); runs on a CPU are not "
        "bit-for-bit repeatable, because parallel data loading and multithreaded kernels vary the order",
    )
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out files of a --data folder that cannot be decoded, with a warning listing them "
        "(default: stop before training and name them)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)",
    )


def _add_tune_arguments(parser):
    """Add the options of the search. Options left out take `TuneConfig`'s defaults."""
    parser.add_argument(
        "--tuner",
        choices=("random", "hyperband", "bayesian"),
        default="random",
        help="Keras Tuner oracle that proposes the trials (default: random)",
    )
    parser.add_argument(
        "--max-trials", type=int, default=10, help="trials to run at most, counting those over the budget (default: 10)"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=5,
        help="epochs per trial; Hyperband's maximum epochs per model (default: 5)",
    )
    parser.add_argument("--family", choices=("cifar", "imagenet"), default="cifar", help="network family (default: cifar)")
    parser.add_argument(
        "--depths",
        type=int,
        nargs="+",
        default=None,
        help="depths to search (default: 8 14 20 32 44 56 for cifar, 18 34 50 101 152 for imagenet)",
    )
    parser.add_argument(
        "--widths", type=float, nargs="+", default=None, help="width multipliers to search (default: 0.25 0.5 1 2)"
    )
    parser.add_argument(
        "--learning-rate-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="range of the peak learning rate at batch size 128, sampled on a log scale (default: 0.01 0.5)",
    )
    parser.add_argument(
        "--weight-decay-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="range of the decoupled weight decay, sampled on a log scale (default: 0.0005 0.05)",
    )
    parser.add_argument(
        "--steps-per-epoch", type=int, default=None, help="training steps per epoch (default: the whole training set)"
    )
    parser.add_argument(
        "--validation-steps", type=int, default=None, help="validation batches per epoch (default: all of them)"
    )
    parser.add_argument("--max-params", type=_count, default=None, help="reject models with more trainable parameters")
    parser.add_argument(
        "--max-flops", type=_count, default=None, help="reject models with more multiply-adds per image, such as 5e7"
    )
    parser.add_argument(
        "--max-latency-ms",
        type=float,
        default=None,
        help="reject models slower than this many milliseconds per image of inference on this machine",
    )
    parser.add_argument(
        "--latency-batch-size", type=int, default=1, help="images per inference call when timing (default: 1)"
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start no trial after this many minutes; rerun the command to continue (default: no limit)",
    )
    parser.add_argument(
        "--directory", default="experiments/tuning", help="folder of tuning projects (default: experiments/tuning)"
    )
    parser.add_argument(
        "--project-name",
        default=None,
        help="project sub-folder of --directory (default: <family>-<tuner>, such as cifar-random)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="delete a project with other settings and start it afresh"
    )
    role = parser.add_mutually_exclusive_group()
    role.add_argument(
        "--chief", action="store_true", help="serve the oracle to --worker processes and write the report"
    )
    role.add_argument("--worker", metavar="NAME", default=None, help="run trials for the chief under this unique name")
    parser.add_argument(
        "--oracle-ip", default="127.0.0.1", help="address of the chief's oracle (default: 127.0.0.1)"
    )
    parser.add_argument("--oracle-port", type=int, default=None, help="port of the chief's oracle")


def _count(text):
    """Parse a count such as 250000 or 5e7."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number such as 250000 or 5e7; received {text!r}")
    return int(value)


_TUNE_HELP = (
    "Search ResNet depth, width, learning rate and weight decay with a Keras Tuner oracle, rejecting models over "
    "the budget before they train. Writes trials.csv, pareto.png and best_model.keras into the project folder. "
    "Rerunning an interrupted command continues its search."
)


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
        model=args.model,
        depth=args.depth,
        family=args.family,
        width=args.width,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        precision=args.precision,
        jit_compile={"auto": "auto", "true": True, "false": False}[args.jit_compile],
        **_shared_settings(args),
    )
    metrics = training.train(cfg, output=args.output, overwrite=args.overwrite)
    _print_summary(metrics)
    return 0


def _benchmark(args):
    from keras_resnet import benchmark

    return benchmark.run(args)


def _export(args):
    from keras_resnet import export

    if args.format == "onnx":
        ignored = [option for option, value in (("--name", args.name), ("--base-dir", args.base_dir),
                                                ("--version", args.version)) if value is not None]
        if ignored:
            raise ValueError(f"{', '.join(ignored)} apply to SavedModel exports only; with --format onnx use --output.")
        print(export.export_onnx(args.model, args.output, overwrite=args.overwrite))
        return 0
    if args.output is not None:
        raise ValueError("--output applies to --format onnx only; a SavedModel goes to --base-dir/--name/VERSION.")
    if args.name is None:
        raise ValueError("A SavedModel export needs --name, the model name TF Serving will serve it under.")
    base_dir = args.base_dir if args.base_dir is not None else export.DEFAULT_BASE_DIR
    print(export.export_saved_model(
        args.model, args.name, base_dir=base_dir, version=args.version, overwrite=args.overwrite
    ))
    return 0


def _predict(args):
    from keras_resnet import predict

    results = predict.predict_images(args.model, args.images, top=args.top)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        print(result["image"])
        for rank, entry in enumerate(result["top"], start=1):
            print(f"  {rank}. {entry['class']:<24} {entry['probability']:8.4f}")
    return 0


def _shared_settings(args):
    """Return the `TrainConfig` settings that train and tune both take from options."""
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "data": args.data,
        "image_size": args.image_size,
        "channels": args.channels,
        "validation_split": args.validation_split,
        "warmup_epochs": args.warmup_epochs,
        "seed": args.seed,
        "skip_bad_images": args.skip_bad_images,
    }


def _tune(args):
    from keras_resnet import budget
    from keras_resnet import report
    from keras_resnet import training
    from keras_resnet import tuning

    if args.oracle_port is not None and not (args.chief or args.worker is not None):
        raise ValueError(f"--oracle-port {args.oracle_port} needs --chief or --worker NAME; pass one of them.")
    if args.chief or args.worker is not None:
        role = "chief" if args.chief else "worker"
        os.environ.update(tuning.distributed_environment(role, args.worker, args.oracle_ip, args.oracle_port))
    search_space = {
        "depths": args.depths,
        "widths": args.widths,
        "learning_rate_range": args.learning_rate_range,
        "weight_decay_range": args.weight_decay_range,
    }
    cfg = tuning.TuneConfig(
        tuner=args.tuner,
        max_trials=args.max_trials,
        family=args.family,
        **{name: value for name, value in search_space.items() if value is not None},
        train=training.TrainConfig(**_shared_settings(args)),
        budget=budget.Budget(
            max_params=args.max_params,
            max_flops=args.max_flops,
            max_latency_ms=args.max_latency_ms,
            latency_batch_size=args.latency_batch_size,
        ),
        steps_per_epoch=args.steps_per_epoch,
        validation_steps=args.validation_steps,
        max_minutes=args.max_minutes,
        directory=args.directory,
        project_name=args.project_name,
        overwrite=args.overwrite,
    )
    result = tuning.tune(cfg)

    if result.time_limit_reached:
        print(f"Stopped after --max-minutes {args.max_minutes}; rerun the same command to continue the search.")
    if result.role == "worker":
        ran = ", ".join(result.trials_run) or "none"
        print(f"Worker {args.worker} ran trials: {ran}. The chief writes the report into {result.project_dir}/.")
        return 0
    print(report.format_table(result.rows))
    best = result.best
    print(
        f"\nBest trial {best['trial']}: depth {best['depth']}, width {best['width']:g}, {best['params']:,} trainable "
        f"parameters, {best['flops'] / 1e6:,.1f}M FLOPs, validation accuracy {best['val_accuracy']:.4f}. Files in "
        f"{result.project_dir}/: {result.table.name}, {result.plot.name}, {result.best_model.name}."
    )
    completed = sum(row["status"] == "completed" for row in result.rows)
    print(
        json.dumps(
            {
                "best_trial": best["trial"],
                "val_accuracy": best["val_accuracy"],
                "trials": len(result.rows),
                "completed": completed,
                "best_model": str(result.best_model),
            }
        )
    )
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
