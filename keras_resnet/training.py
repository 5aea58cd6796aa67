"""Training with `model.fit`: the recipe, its callbacks and the run folder.

A run folder receives:

- `model.keras`: the model of the best validation accuracy so far (the last
  epoch's model when there is no validation split);
- `history.csv`: one row of metrics per epoch (`keras.callbacks.CSVLogger`);
- `curves.png`: loss and accuracy per epoch;
- `metrics.json`: the final figures, written last, so its presence marks a
  finished run;
- `backup/`: `keras.callbacks.BackupAndRestore` state while a run is going,
  so rerunning an interrupted run resumes from its last finished epoch;
- `run_config.json`: the settings, so a resumed run is checked to have the
  same ones.

`model.keras`, `curves.png` and `metrics.json` are written to a temporary
file and renamed into place, so an interrupted run never leaves a truncated
file where a good one was.
"""

import contextlib
import csv
import dataclasses
import json
import logging
import math
import pathlib
import re
import shutil
import time

import keras

from keras_resnet import config
from keras_resnet import data as data_lib
from keras_resnet import models
from keras_resnet import saving

logger = logging.getLogger(__name__)

BACKUP_DIR = "backup"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
CURVES_FILE = "curves.png"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "run_config.json"
# Settings that may differ between an interrupted run and its resumption.
RESUMABLE_CHANGES = ("jit_compile", "verbose", "skip_bad_images")


@dataclasses.dataclass
class TrainConfig:
    """Settings of one training run; the defaults are the CIFAR recipe.

    The recipe is He et al. 2016's (SGD with momentum 0.9, learning rate 0.1
    at batch 128, weight decay) with two common updates: Nesterov momentum
    and a cosine learning-rate decay after a linear warm-up.

    Attributes:
        model: str or None, a named variant such as "resnet50d" or
            "preresnet110" (see `keras_resnet.available_models`).
        depth: int or None, network depth (see `keras_resnet.build`); None
            is 20 (CIFAR ResNet-20) unless `model` names the network.
        family: "imagenet", "cifar" or None (inferred from the depth).
        width: float, width multiplier.
        epochs: int, number of epochs.
        batch_size: int, images per training step.
        data: str, data source (see `keras_resnet.load_datasets`).
        image_size: int or None, square size images are resized to.
        channels: int, 3 (RGB) or 1 (grayscale).
        validation_split: float, share of each class held out.
        learning_rate: float, peak learning rate at `batch_size` 128; it is
            scaled linearly with the batch size (Goyal et al. 2017).
        weight_decay: float, decoupled weight decay of Keras's optimizers:
            each step multiplies a kernel by `1 - learning_rate *
            weight_decay`. BatchNorm parameters and biases are not decayed.
            With momentum 0.9 this decays about as much as an L2 penalty of
            `weight_decay / 10` added to the gradient (the coupled form that
            PyTorch's SGD uses), so the default 5e-3 matches the common 5e-4.
        momentum: float, Nesterov momentum.
        warmup_epochs: float, epochs of linear learning-rate warm-up from 0.
        seed: int, seed for weights, shuffling and augmentation.
        skip_bad_images: bool, whether files of a folder source that cannot
            be decoded are left out with a warning instead of stopping.
        jit_compile: bool or "auto", passed to `model.compile`.
        precision: "float32", "mixed_bfloat16", "mixed_float16" or "auto",
            the Keras dtype policy of the layers (see `resolve_precision`).
            Variables stay float32 under the mixed policies, and the
            classifier computes in float32; "mixed_float16" adds Keras's
            dynamic loss scaling.
        verbose: "auto", 0, 1 or 2, passed to `model.fit`.
    """

    depth: int = None
    family: str = None
    width: float = 1.0
    epochs: int = 15
    batch_size: int = 128
    data: str = data_lib.SAMPLE
    image_size: int = None
    channels: int = 3
    validation_split: float = 0.1
    learning_rate: float = 0.1
    weight_decay: float = 5e-3
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    seed: int = 0
    skip_bad_images: bool = False
    # Keras's "auto" leaves XLA off for TensorFlow on a CPU-only machine,
    # keeps the torch backend eager, and always compiles on JAX. On a 2-core
    # AMD EPYC (Zen 4), experiments/compile_settings.py measured CIFAR
    # ResNet-20 with TensorFlow at 469 images/s with "auto", 468 with False
    # (which "auto" resolves to there) and 333 with XLA.
    jit_compile: object = "auto"
    # float32 by default, so that a saved model computes the same on every
    # machine. resolve_precision explains "auto".
    precision: str = "float32"
    verbose: object = "auto"
    model: str = None


DEFAULT_DEPTH = 20


def architecture_arguments(cfg):
    """Return the `variant`, `depth` and `family` arguments of `build` for `cfg`."""
    depth = DEFAULT_DEPTH if cfg.depth is None and cfg.model is None else cfg.depth
    return {"variant": cfg.model, "depth": depth, "family": cfg.family}


PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")


def resolve_precision(precision):
    """Return the Keras dtype policy name that `precision` stands for.

    "auto" is "mixed_bfloat16" on a machine without a GPU whose CPU has
    native bfloat16 instructions (AVX512_BF16 or AMX), else "float32".
    On 2 AMD EPYC (Zen 4) cores, CIFAR ResNet-20 at batch 128 trained at 517
    images/s under mixed_bfloat16 against 454 in float32 on TensorFlow, at
    459 against 379 on the torch backend, and 4 % faster on JAX (medians of
    3 rounds of `keras-resnet benchmark`, recorded in experiments/results).
    No accuracy cost showed: ResNet-20 trained 15 epochs on 9,990 CIFAR-10
    images reached 75.4 % validation accuracy on 5,010 held-out images under
    mixed_bfloat16 and 75.2 % in float32, one run each
    (experiments/cifar10_recipe.py, records in experiments/README.md).
    On a GPU "auto" keeps float32, because mixed_float16 was not measured.

    Args:
        precision: one of `PRECISIONS`.

    Returns:
        str, "float32", "mixed_bfloat16" or "mixed_float16".
    """
    config.check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    if _has_gpu() or not _cpu_has_bfloat16():
        return "float32"
    return "mixed_bfloat16"


@contextlib.contextmanager
def precision_policy(precision):
    """Make the layers built inside the block use the dtype policy of `precision`.

    The global Keras policy is restored on leaving the block; the layers keep
    theirs, and a saved model keeps them too.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_precision(precision))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _cpu_has_bfloat16():
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def _has_gpu():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


class RunExistsError(FileExistsError):
    """The output folder contains a run that would be overwritten."""


def make_schedule(cfg, steps_per_epoch):
    """Return a linear warm-up from 0 followed by a cosine decay to 0."""
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    warmup_steps = min(int(cfg.warmup_epochs * steps_per_epoch), total_steps - 1)
    peak = cfg.learning_rate * cfg.batch_size / 128
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else peak,
        decay_steps=total_steps - warmup_steps,
        warmup_target=peak if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def make_optimizer(model, cfg, steps_per_epoch):
    """Return SGD with Nesterov momentum, the schedule, and weight decay."""
    optimizer = keras.optimizers.SGD(
        learning_rate=make_schedule(cfg, steps_per_epoch), momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay
    )
    # Only convolution and dense kernels are decayed: decaying BatchNorm's
    # gamma and beta or a bias only constrains the scale and offset.
    optimizer.exclude_from_weight_decay(var_list=[w for w in model.trainable_weights if w.name != "kernel"])
    return optimizer


def build_model(cfg, datasets):
    """Build the network of `cfg` for `datasets`, normalising raw pixels inside.

    The model also stores the class names of `datasets` (see
    `keras_resnet.class_names`), which export and prediction read.

    Args:
        cfg: `TrainConfig`; its depth, family and width are used.
        datasets: `keras_resnet.data.Datasets`; the classes, image shape and
            channel statistics are used.

    Returns:
        An uncompiled `keras.Model`.
    """
    with precision_policy(cfg.precision):
        return models.build(
            **architecture_arguments(cfg),
            width=cfg.width,
            num_classes=len(datasets.class_names),
            input_shape=datasets.image_shape,
            input_normalization=(datasets.mean, datasets.std),
            class_names=datasets.class_names,
        )


def compile_model(model, cfg, steps_per_epoch):
    """Compile `model` with the recipe of `cfg`: SGD, the schedule, cross-entropy and accuracy.

    Args:
        model: `keras.Model`.
        cfg: `TrainConfig`; the optimizer settings, epochs and `jit_compile`
            are used.
        steps_per_epoch: int, training steps per epoch, which sets the
            length of the learning-rate schedule.
    """
    model.compile(
        optimizer=make_optimizer(model, cfg, steps_per_epoch),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=cfg.jit_compile,
    )


def train(cfg=None, output=None, overwrite=False, callbacks=()):
    """Train a ResNet and write the run folder.

    Args:
        cfg: `TrainConfig`, or None for the defaults.
        output: str or path of the run folder, or None for
            `runs/<model name>`, where a finished run moves on to
            `runs/<model name>-2` and so on.
        overwrite: bool, whether a finished run in `output` may be replaced.
        callbacks: sequence of `keras.callbacks.Callback`, added to the
            run's own callbacks.

    Returns:
        dict, the contents of `metrics.json`.

    Raises:
        RunExistsError: if `overwrite` is False and `output` contains a finished
            run, an interrupted run with other settings, or a run that
            stopped without a backup to resume from.
        ValueError, TypeError: for invalid settings or data (see `build` and
            `load_datasets`).
        FloatingPointError: if the loss becomes NaN; `model.keras` keeps the
            best model saved before that.
    """
    cfg = cfg or TrainConfig()
    arch = check_config(cfg)
    run_dir = resolve_run_dir(output, models.default_name(cfg.model, arch, cfg.width))
    replace = _check_run_dir(run_dir, cfg, overwrite)
    keras.utils.set_random_seed(cfg.seed)

    datasets = data_lib.load_datasets(
        cfg.data,
        batch_size=cfg.batch_size,
        image_size=cfg.image_size,
        validation_split=cfg.validation_split,
        seed=cfg.seed,
        skip_bad_images=cfg.skip_bad_images,
        channels=cfg.channels,
    )
    check_image_size(datasets, arch)
    model = build_model(cfg, datasets)
    steps_per_epoch = max(1, datasets.train_size // cfg.batch_size)
    backend = keras.backend.backend()
    compile_model(model, cfg, steps_per_epoch)
    logger.info(
        "Training %s (%d trainable parameters) on %d images from %s under %s, epochs=%d, into %s",
        model.name, _trainable_params(model), datasets.train_size, cfg.data, backend, cfg.epochs, run_dir,
    )

    _start_run_dir(run_dir, cfg, replace)
    timer = TrainTimer()
    monitor = "val_accuracy" if datasets.validation is not None else "accuracy"
    checkpoint = AtomicBestCheckpoint(run_dir / MODEL_FILE, monitor, history_path=run_dir / HISTORY_FILE)
    run_callbacks = [
        keras.callbacks.TerminateOnNaN(),
        timer,
        checkpoint,
        keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=True),
        keras.callbacks.BackupAndRestore(str(run_dir / BACKUP_DIR)),
        *callbacks,
    ]
    model.fit(
        datasets.train,
        validation_data=datasets.validation,
        epochs=cfg.epochs,
        callbacks=run_callbacks,
        verbose=cfg.verbose,
        # The training pipeline shuffles already.
        shuffle=False,
    )

    history = read_history(run_dir / HISTORY_FILE)
    # TerminateOnNaN stops mid-epoch; the epoch's row in history.csv then
    # records the NaN loss.
    if any(math.isnan(row.get("loss", 0.0)) for row in history):
        saved_model = (
            f"{run_dir / MODEL_FILE} keeps the best model saved before"
            if (run_dir / MODEL_FILE).exists()
            else "no model had been saved yet"
        )
        raise FloatingPointError(
            f"Training stopped: the loss became NaN, and {saved_model}. Try a lower --learning-rate, with --overwrite "
            "or another --output."
        )
    if len(history) < cfg.epochs:
        raise RuntimeError(
            f"Training stopped after {len(history)} of {cfg.epochs} epochs because a callback set "
            f"model.stop_training; {run_dir / MODEL_FILE} contains the best model so far."
        )

    plot_curves(history, run_dir / CURVES_FILE)
    metrics = _metrics(cfg, arch, model, datasets, history, timer, monitor, backend)
    metrics["run_dir"] = str(run_dir)
    # Strict JSON has no NaN or infinity; a non-finite figure becomes null.
    metrics = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()}
    saving.atomic_write_text(run_dir / METRICS_FILE, json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    return metrics


def resolve_run_dir(output, name):
    """Return the run folder: `output`, or the first unfinished `runs/<name>[-N]`."""
    if output is not None:
        return pathlib.Path(output)
    for index in range(1, 10_000):
        candidate = pathlib.Path("runs") / (name if index == 1 else f"{name}-{index}")
        if not (candidate / METRICS_FILE).exists():
            return candidate
    raise RunExistsError(f"runs/{name} to runs/{name}-9999 all hold finished runs; pass --output.")


def _check_run_dir(run_dir, cfg, overwrite):
    """Check what `run_dir` contains; return True when a previous run is to be replaced.

    Nothing is deleted here, so a run that fails on its input afterwards
    leaves the folder as it was.
    """
    for folder in (run_dir, *run_dir.parents):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"--output '{run_dir}' cannot be a folder because '{folder}' is a file.")
    if not run_dir.exists():
        return False

    if (run_dir / METRICS_FILE).exists():
        problem = f"already contains a finished run ({METRICS_FILE})"
    elif (run_dir / BACKUP_DIR).exists():
        changes = _config_changes(run_dir / CONFIG_FILE, cfg)
        if not changes:
            logger.info("Resuming the interrupted run in %s", run_dir)
            return False
        problem = f"contains an interrupted run with other settings ({'; '.join(changes)})"
    elif (run_dir / HISTORY_FILE).exists():
        problem = "contains a run that stopped without a backup to resume from (after a NaN loss, for example)"
    else:
        return False

    if overwrite:
        return True
    raise RunExistsError(f"'{run_dir}' {problem}; pass --overwrite to replace it or choose another --output.")


def _config_changes(path, cfg):
    """Return "name: old -> new" for each setting that differs from the saved one."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return [f"{CONFIG_FILE} is missing or unreadable"]
    current = _config_record(cfg)
    return [
        f"{name}: {saved.get(name)!r} -> {value!r}" for name, value in current.items() if saved.get(name) != value
    ]


def _config_record(cfg):
    record = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUMABLE_CHANGES}
    return json.loads(json.dumps(record, default=str))


def _start_run_dir(run_dir, cfg, replace):
    """Create `run_dir`, clear a replaced run and record the settings."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if replace:
        # model.keras stays until the new run saves its first model.
        for name in (METRICS_FILE, HISTORY_FILE, CONFIG_FILE, CURVES_FILE):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)

    # A process killed while writing leaves its temporary file behind, and
    # the file it was replacing is intact.
    for leftover in run_dir.iterdir():
        if _TEMPORARY_NAME.match(leftover.name):
            leftover.unlink()

    if not (run_dir / BACKUP_DIR).exists():
        saving.atomic_write_text(run_dir / CONFIG_FILE, json.dumps(_config_record(cfg), indent=2) + "\n")


_TEMPORARY_NAME = re.compile(r"^\.tmp-\d+-(model\.keras|curves\.png|metrics\.json|run_config\.json)$")


def check_image_size(datasets, arch):
    """Raise a ValueError if the images of `datasets` are smaller than `arch`'s total stride."""
    minimum = arch.total_stride
    height, width, _ = datasets.image_shape
    if min(height, width) < minimum:
        raise ValueError(
            f"Images of {height}x{width} pixels are too small for ResNet-{arch.depth} ({arch.family}), which "
            f"needs at least {minimum}x{minimum}; pass --image-size {minimum} or larger."
        )


def check_config(cfg):
    """Validate `cfg` before any work starts; return its `config.Architecture`."""
    arch = models.resolve(**architecture_arguments(cfg), width=cfg.width)
    config.check_int("epochs", cfg.epochs, minimum=1)
    config.check_int("batch_size", cfg.batch_size, minimum=1)
    config.check_positive_number("learning_rate", cfg.learning_rate)
    config.check_in_range("weight_decay", cfg.weight_decay, 0, math.inf, "a finite number >= 0")
    config.check_in_range("momentum", cfg.momentum, 0, 1, "a number in [0, 1)")
    config.check_in_range("warmup_epochs", cfg.warmup_epochs, 0, math.inf, "a finite number >= 0")
    config.check_in_range("validation_split", cfg.validation_split, 0, 1, "a number in [0, 1)")
    config.check_int("seed", cfg.seed, minimum=0)
    config.check_choice("precision", cfg.precision, PRECISIONS)
    if cfg.seed >= 2**32:
        raise ValueError(f"`seed` must be an integer in [0, 2**32); received {cfg.seed!r}.")
    return arch


class TrainTimer(keras.callbacks.Callback):
    """Record the seconds spent in training steps, without validation."""

    def __init__(self):
        super().__init__()
        self.seconds = 0.0
        self.epochs = 0
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_test_begin(self, logs=None):
        self._stop()

    def on_epoch_end(self, epoch, logs=None):
        self._stop()
        self.epochs += 1

    def _stop(self):
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None


class AtomicBestCheckpoint(keras.callbacks.Callback):
    """Save the model whenever `monitor` improves, by writing and renaming.

    `keras.callbacks.ModelCheckpoint` writes straight to its file path, so a
    run killed during a save would leave a truncated file in place of the
    previous best model.

    Args:
        path: path of the `.keras` file.
        monitor: str, metric to maximise, such as "val_accuracy".
        history_path: path of the run's CSV history. When the run resumes,
            the best value recorded there is the one to beat.
    """

    def __init__(self, path, monitor, history_path=None):
        super().__init__()
        self.path = pathlib.Path(path)
        self.monitor = monitor
        self.best = -math.inf
        if history_path is not None and self.path.exists():
            values = [row[monitor] for row in read_history(history_path) if monitor in row]
            self.best = max(values, default=-math.inf)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or float(value) <= self.best:
            return
        self.best = float(value)
        with saving.atomic_path(self.path) as temporary:
            self.model.save(temporary)


def read_history(path):
    """Return the rows of a CSVLogger file as dicts of floats, one per epoch.

    A resumed run can repeat an epoch that finished after the last backup;
    the later row wins.
    """
    if not pathlib.Path(path).exists():
        return []
    rows = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("epoch", "") == "epoch":
                continue
            # CSVLogger writes "NA" for a metric missing from an epoch's logs.
            rows[int(row["epoch"])] = {key: float(value) for key, value in row.items() if value not in ("", "NA")}
    return [rows[epoch] for epoch in sorted(rows)]


def plot_curves(history, path):
    """Draw loss and accuracy per epoch into a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [row["epoch"] + 1 for row in history]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix, label in (("", "training"), ("val_", "validation")):
            if any(prefix + metric in row for row in history):
                axis.plot(epochs, [row.get(prefix + metric, math.nan) for row in history], marker="o", label=label)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()

    with saving.atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)


def _trainable_params(model):
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


def _metrics(cfg, arch, model, datasets, history, timer, monitor, backend):
    best = max(history, key=lambda row: row.get(monitor, -math.inf))
    last = history[-1]
    # Training drops the last partial batch unless the data is smaller than
    # one batch.
    per_epoch = datasets.train_size
    if datasets.train_size >= cfg.batch_size:
        per_epoch = datasets.train_size // cfg.batch_size * cfg.batch_size
    images_trained = timer.epochs * per_epoch
    return {
        "val_accuracy": best.get("val_accuracy"),
        "val_loss": best.get("val_loss"),
        "best_epoch": int(best["epoch"]) + 1,
        "final_val_accuracy": last.get("val_accuracy"),
        "final_accuracy": last.get("accuracy"),
        "final_loss": last.get("loss"),
        "epochs": len(history),
        "epochs_this_process": timer.epochs,
        "backend": backend,
        "keras_version": keras.__version__,
        "jit_compile": cfg.jit_compile,
        "precision": resolve_precision(cfg.precision),
        "model": model.name,
        "variant": cfg.model,
        "family": arch.family,
        "depth": arch.depth,
        "width": cfg.width,
        "params": _trainable_params(model),
        "total_params": int(model.count_params()),
        "data": str(cfg.data),
        "class_names": datasets.class_names,
        "image_shape": list(datasets.image_shape),
        "train_images": datasets.train_size,
        "validation_images": datasets.validation_size,
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "weight_decay": cfg.weight_decay,
        "seed": cfg.seed,
        "train_seconds": round(timer.seconds, 2),
        "images_per_second": round(images_trained / timer.seconds, 1) if timer.seconds else None,
        "input_mean": list(datasets.mean),
        "input_std": list(datasets.std),
    }
