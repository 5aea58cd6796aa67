"""Keras Tuner search over ResNet depth, width, learning rate and weight decay.

`tune()` runs one of Keras Tuner's oracles (random search, Hyperband or
Bayesian optimisation) over the hyperparameters of `ResNetHyperModel`:

| name            | kind   | values                                   | default |
|-----------------|--------|------------------------------------------|---------|
| "depth"         | Choice | `DEFAULT_DEPTHS[family]` or `depths`     | 20 (CIFAR), 50 (ImageNet) |
| "width"         | Choice | `DEFAULT_WIDTHS` or `widths`             | 1.0     |
| "learning_rate" | Float  | `LEARNING_RATE_RANGE`, log sampling      | 0.1     |
| "weight_decay"  | Float  | `WEIGHT_DECAY_RANGE`, log sampling       | 5e-3    |

A default outside the given values becomes the first of them, and a
default outside a given range becomes its nearest bound. Each trial
trains with `keras-resnet train`'s recipe (`training.compile_model`). A
`budget.Budget` rejects a trial before training with Keras Tuner's
`FailedTrialError`, so the trial is marked FAILED and never retried.

The project folder (`directory/project_name`) contains Keras Tuner's state:
`oracle.json`, `tuner*.json`, `trial_*/trial.json` and the best-epoch
weights of each trial. Beside it, `tune_config.json` records the settings,
and each `trial_*/measures.json` records that trial's parameters, FLOPs,
latency, seconds and resident memory. After the search the folder also
contains `trials.csv`, `pareto.png` and `best_model.keras` (see
`keras_resnet.report`). Keras Tuner's JSON state is
written to a temporary file and renamed, so a killed process leaves the
previous state intact, and rerunning the same search resumes it: finished
trials are kept and a trial that was running is run again.

Distributed search uses Keras Tuner's own mode. One chief process runs the
oracle as a gRPC server and trains nothing; worker processes ask it for
trials. Every process reads `KERASTUNER_TUNER_ID` ("chief" for the chief,
any other name for a worker), `KERASTUNER_ORACLE_IP` and
`KERASTUNER_ORACLE_PORT` from the environment (`distributed_environment()`
returns them), and all of them must share the project folder.
"""

import dataclasses
import json
import logging
import os
import pathlib
import time

import keras
import keras_tuner

from keras_resnet import budget as budget_lib
from keras_resnet import config
from keras_resnet import data as data_lib
from keras_resnet import report
from keras_resnet import saving
from keras_resnet import training

logger = logging.getLogger(__name__)

TUNERS = ("random", "hyperband", "bayesian")
DEFAULT_DEPTHS = {"cifar": (8, 14, 20, 32, 44, 56), "imagenet": (18, 34, 50, 101, 152)}
# The defaults are `keras-resnet train`'s: ResNet-20 for CIFAR and the
# familiar ResNet-50 for ImageNet.
DEFAULT_DEPTH = {"cifar": 20, "imagenet": 50}
DEFAULT_WIDTHS = (0.25, 0.5, 1.0, 2.0)
DEFAULT_WIDTH = 1.0
# Ranges around `TrainConfig`'s defaults (learning rate 0.1 at batch 128,
# decoupled weight decay 5e-3), one decade below and about half a decade
# above: SGD on ResNets diverges well before a learning rate of 1.
LEARNING_RATE_RANGE = (0.01, 0.5)
WEIGHT_DECAY_RANGE = (5e-4, 5e-2)
DEFAULT_LEARNING_RATE = 0.1
DEFAULT_WEIGHT_DECAY = 5e-3
# Hyperband's reduction factor, the value its authors (Li et al. 2018)
# and Keras Tuner use.
HYPERBAND_FACTOR = 3
# Keras Tuner stops a search after this many FAILED trials in a row. Its
# default of 3 would end a search as soon as the budget rejects three
# sampled models in a row.
MAX_CONSECUTIVE_FAILED_TRIALS = 20
OBJECTIVE = "val_accuracy"

CONFIG_FILE = "tune_config.json"
MEASURES_FILE = "measures.json"
BEST_MODEL_FILE = "best_model.keras"
# Settings that may change when a search resumes.
RESUMABLE_CHANGES = ("max_trials", "max_minutes", "verbose")
CHIEF_ID = "chief"


@dataclasses.dataclass
class TuneConfig:
    """Settings of a search.

    Attributes:
        tuner: "random", "hyperband" or "bayesian": which Keras Tuner oracle
            proposes the trials.
        max_trials: int, trials to run at most, counting those rejected by
            the budget. Hyperband also stops when its brackets are done.
        family: "cifar" or "imagenet", the family whose depths are searched.
        depths: tuple of int or None (`DEFAULT_DEPTHS[family]`).
        widths: tuple of float or None (`DEFAULT_WIDTHS`).
        learning_rate_range: (low, high) of the peak learning rate at batch
            size 128.
        weight_decay_range: (low, high) of the decoupled weight decay.
        train: `training.TrainConfig` with the fixed training settings:
            epochs (Hyperband's maximum epochs per model), batch size, data,
            image size, channels, validation split, warm-up, momentum,
            seed. Its depth, width, learning rate and weight decay are
            replaced by each trial's.
        budget: `budget.Budget`; trials over it are rejected before
            training.
        steps_per_epoch: int or None, training steps per epoch; None covers
            the training set once.
        validation_steps: int or None, validation batches per epoch; None
            covers the validation set.
        max_minutes: float or None. No trial starts after this many minutes
            of this process; a running trial finishes.
        directory: str or path, the folder of tuning projects.
        project_name: str or None, the project's sub-folder; None means
            "<family>-<tuner>", such as "cifar-random".
        overwrite: bool, whether an existing project with other settings is
            deleted and started afresh.
        verbose: 0, 1 or 2, Keras Tuner's and `model.fit`'s output.
    """

    tuner: str = "random"
    max_trials: int = 10
    family: str = "cifar"
    depths: tuple = None
    widths: tuple = None
    learning_rate_range: tuple = LEARNING_RATE_RANGE
    weight_decay_range: tuple = WEIGHT_DECAY_RANGE
    train: training.TrainConfig = dataclasses.field(default_factory=training.TrainConfig)
    budget: budget_lib.Budget = dataclasses.field(default_factory=budget_lib.Budget)
    steps_per_epoch: int = None
    validation_steps: int = None
    max_minutes: float = None
    directory: str = "experiments/tuning"
    project_name: str = None
    overwrite: bool = False
    verbose: int = 0


@dataclasses.dataclass
class TuneResult:
    """The outcome of a search.

    Attributes:
        project_dir: `pathlib.Path` of the project folder.
        role: "single", "chief" or "worker".
        rows: list of dict, one per trial (see `report.trial_rows`); empty
            on a worker, which leaves the report to the chief.
        best: dict, the row of the best completed trial, or None.
        best_model: `pathlib.Path` of `best_model.keras`, or None.
        table: `pathlib.Path` of `trials.csv`, or None.
        plot: `pathlib.Path` of `pareto.png`, or None.
        trials_run: list of str, the trial ids this process ran.
        time_limit_reached: bool, whether `max_minutes` stopped the search.
    """

    project_dir: pathlib.Path
    role: str
    rows: list
    best: dict = None
    best_model: pathlib.Path = None
    table: pathlib.Path = None
    plot: pathlib.Path = None
    trials_run: list = dataclasses.field(default_factory=list)
    time_limit_reached: bool = False


class ResNetHyperModel(keras_tuner.HyperModel):
    """A Keras Tuner `HyperModel` of the ResNets that `keras-resnet train` builds.

    `declare_hyperparameters(hp)` declares the hyperparameters listed in
    the module docstring, and `build(hp)` returns the uncompiled network. `fit(hp, model, ...)` measures the
    model, rejects it when it is over the budget, compiles it with the
    trial's learning rate and weight decay, and trains it.

    Args:
        datasets: `keras_resnet.data.Datasets`; the classes, image shape
            and channel statistics shape every model.
        family: "cifar" (the default) or "imagenet".
        depths: sequence of int or None (`DEFAULT_DEPTHS[family]`).
        widths: sequence of float > 0 or None (`DEFAULT_WIDTHS`).
        learning_rate_range: (low, high), 0 < low < high.
        weight_decay_range: (low, high), 0 < low < high.
        train_config: `training.TrainConfig` or None, the fixed training
            settings.
        budget: `budget.Budget` or None (no bounds).

    Raises:
        ValueError, TypeError: for a depth outside the family, an empty or
            invalid list, a reversed range, or images smaller than the
            network's total stride.
    """

    def __init__(
        self,
        datasets,
        family="cifar",
        depths=None,
        widths=None,
        learning_rate_range=LEARNING_RATE_RANGE,
        weight_decay_range=WEIGHT_DECAY_RANGE,
        train_config=None,
        budget=None,
    ):
        super().__init__(name="resnet")
        config.check_choice("family", family, config.FAMILIES)
        self.family = family
        self.depths = _check_values("depths", DEFAULT_DEPTHS[family] if depths is None else depths, int)
        self.widths = _check_values("widths", DEFAULT_WIDTHS if widths is None else widths, float)
        for depth in self.depths:
            for width in self.widths:
                training.check_image_size(datasets, config.resolve_architecture(depth, family, width))
        self.learning_rate_range = _check_range("learning_rate_range", learning_rate_range)
        self.weight_decay_range = _check_range("weight_decay_range", weight_decay_range)
        self.datasets = datasets
        self.train_config = train_config or training.TrainConfig()
        self.budget = budget or budget_lib.Budget()

    def declare_hyperparameters(self, hp):
        """Declare the search space in `hp`; Keras Tuner calls this before the first trial."""
        default_depth = DEFAULT_DEPTH[self.family]
        hp.Choice("depth", list(self.depths), default=default_depth if default_depth in self.depths else self.depths[0])
        hp.Choice("width", list(self.widths), default=DEFAULT_WIDTH if DEFAULT_WIDTH in self.widths else self.widths[0])
        hp.Float(
            "learning_rate",
            *self.learning_rate_range,
            sampling="log",
            default=_clip(DEFAULT_LEARNING_RATE, self.learning_rate_range),
        )
        hp.Float(
            "weight_decay",
            *self.weight_decay_range,
            sampling="log",
            default=_clip(DEFAULT_WEIGHT_DECAY, self.weight_decay_range),
        )

    def build(self, hp):
        """Build the uncompiled network of `hp`'s depth and width."""
        self.declare_hyperparameters(hp)
        return training.build_model(self.trial_config(hp), self.datasets)

    def trial_config(self, hp, epochs=None):
        """Return the `TrainConfig` of a trial: the fixed settings with `hp`'s values."""
        return dataclasses.replace(
            self.train_config,
            depth=hp.get("depth"),
            family=self.family,
            width=hp.get("width"),
            learning_rate=hp.get("learning_rate"),
            weight_decay=hp.get("weight_decay"),
            epochs=epochs or self.train_config.epochs,
        )

    def fit(self, hp, model, *args, epochs=1, initial_epoch=0, steps_per_epoch=None, trial_dir=None, **kwargs):
        """Measure `model`, reject it if over budget, then compile and train it.

        Args:
            hp: `keras_tuner.HyperParameters` of the trial.
            model: the model `build(hp)` returned.
            *args: passed to `model.fit`, the training data first.
            epochs: int, the epoch to train up to. Hyperband sets it per
                trial.
            initial_epoch: int, the epoch to start from; Hyperband continues
                a model of an earlier trial from its last epoch.
            steps_per_epoch: int or None, passed to `model.fit`.
            trial_dir: str or None, the trial's folder, which receives
                `measures.json`.
            **kwargs: passed to `model.fit`, such as `validation_data` and
                `callbacks`.

        Returns:
            The `keras.callbacks.History` of the training.

        Raises:
            keras_tuner.errors.FailedTrialError: if the model is over the
                budget; it has not trained.
        """
        measures = budget_lib.measure(model, self.budget)
        problems = self.budget.violations(measures)
        measures["rejected"] = "; ".join(problems) or None
        if trial_dir is not None:
            _write_json(pathlib.Path(trial_dir) / MEASURES_FILE, measures)
        if problems:
            raise keras_tuner.errors.FailedTrialError(f"Over budget, not trained: {measures['rejected']}.")

        # A Hyperband trial that continues an earlier model starts a fresh
        # optimizer, so the schedule spans the epochs trained here.
        # NOTE: under the tensorflow backend each compile-and-fit of a new
        # model keeps about 20 MiB (Keras 3.15.1, TensorFlow 2.21), even
        # after Keras Tuner's clear_session, so one process grows per trial.
        cfg = self.trial_config(hp, epochs=epochs - initial_epoch)
        full_epoch = max(1, self.datasets.train_size // cfg.batch_size)
        training.compile_model(model, cfg, steps_per_epoch or full_epoch)
        start = time.perf_counter()
        history = model.fit(
            *args,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            # The training pipeline shuffles already.
            shuffle=False,
            **kwargs,
        )
        measures["epochs"] = epochs
        measures["seconds"] = round(time.perf_counter() - start, 3)
        measures["resident_mib"] = resident_memory_mib()
        if trial_dir is not None:
            _write_json(pathlib.Path(trial_dir) / MEASURES_FILE, measures)
        return history


def _check_values(name, values, kind):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"`{name}` must be a list of numbers; received {values!r}.")
    if not list(values):
        raise ValueError(f"`{name}` must contain at least one value; received an empty list.")
    checked = []
    for value in list(values):
        if kind is int:
            checked.append(config.check_int(name, value, minimum=1))
        else:
            checked.append(config.check_positive_number(name, value))
    if len(set(checked)) != len(checked):
        raise ValueError(f"`{name}` must not repeat a value; received {values!r}.")
    return tuple(checked)


def _check_range(name, bounds):
    if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__") or len(bounds) != 2:
        raise TypeError(f"`{name}` must be a pair (low, high); received {bounds!r}.")
    low = config.check_positive_number(name, bounds[0])
    high = config.check_positive_number(name, bounds[1])
    if not low < high:
        raise ValueError(f"`{name}` must be a pair (low, high) with low < high; received {tuple(bounds)!r}.")
    return low, high


def _clip(value, bounds):
    return min(max(value, bounds[0]), bounds[1])


class _AtomicStateMixin:
    """Write an oracle's and its trials' JSON state through a temporary file and a rename.

    Keras Tuner 1.4.8 writes these files in place, so a process killed
    during a write would leave a truncated `oracle.json` that the next run
    cannot reload.
    """

    def save(self):
        _write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        _write_json(pathlib.Path(self._get_trial_dir(trial.trial_id)) / "trial.json", trial.get_state())


class RandomSearchOracle(_AtomicStateMixin, keras_tuner.oracles.RandomSearchOracle):
    """Keras Tuner's random search oracle with atomic state files."""


class HyperbandOracle(_AtomicStateMixin, keras_tuner.oracles.HyperbandOracle):
    """Keras Tuner's Hyperband oracle with atomic state files."""


class BayesianOptimizationOracle(_AtomicStateMixin, keras_tuner.oracles.BayesianOptimizationOracle):
    """Keras Tuner's Bayesian optimisation oracle with atomic state files."""


class SearchTimeLimit(Exception):
    """The search's `max_minutes` ran out before a new trial could start."""


class ResNetTuner(keras_tuner.Hyperband):
    """Keras Tuner's tuner for the three oracles, with logging and a time limit.

    It derives from `keras_tuner.Hyperband` for the two steps that Hyperband
    trials need: training from "tuner/initial_epoch" to "tuner/epochs" and
    starting from the weights of trial "tuner/trial_id". Trials of other
    oracles lack those hyperparameters, and then both steps do nothing.

    Args:
        oracle: one of this module's oracles.
        hypermodel: `ResNetHyperModel`.
        deadline: float or None, a `time.monotonic()` value after which no
            trial starts.
        **kwargs: passed to `keras_tuner.Tuner`, such as `directory`,
            `project_name` and `overwrite`.
    """

    def __init__(self, oracle, hypermodel, deadline=None, **kwargs):
        # keras_tuner.Hyperband.__init__ only creates a HyperbandOracle from
        # its arguments, so it is skipped to use the given oracle.
        keras_tuner.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)
        self.deadline = deadline
        self.trials_run = []
        self.time_limit_reached = False

    def pre_create_trial(self):
        if self.deadline is not None and _clock() > self.deadline:
            self.time_limit_reached = True
            raise SearchTimeLimit()

    def run_trial(self, trial, *args, **kwargs):
        return super().run_trial(trial, *args, trial_dir=self.get_trial_dir(trial.trial_id), **kwargs)

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self.trials_run.append(trial.trial_id)
        values = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        logger.info("Tuner %s starts trial %s: %s", self.tuner_id, trial.trial_id, _format_values(values))

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        message = (trial.message or "").strip().splitlines()
        logger.info(
            "Tuner %s ended trial %s: %s%s",
            self.tuner_id,
            trial.trial_id,
            trial.status,
            f" ({message[-1]})" if message and trial.status != "COMPLETED" else "",
        )

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        _write_json(self._get_tuner_fname(), self.get_state())


# The clock of `max_minutes`, a name of its own so that tests can replace it.
_clock = time.monotonic


def _format_values(values):
    return ", ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}" for name, value in values.items())


def _write_json(path, state):
    saving.atomic_write_text(path, json.dumps(state, indent=1) + "\n")


def make_oracle(cfg):
    """Return the oracle that `cfg.tuner` names, configured from `cfg`."""
    config.check_choice("tuner", cfg.tuner, TUNERS)
    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    common = {
        "objective": objective,
        "seed": cfg.train.seed,
        "max_consecutive_failed_trials": MAX_CONSECUTIVE_FAILED_TRIALS,
    }
    if cfg.tuner == "random":
        return RandomSearchOracle(max_trials=cfg.max_trials, **common)
    if cfg.tuner == "bayesian":
        return BayesianOptimizationOracle(max_trials=cfg.max_trials, **common)
    oracle = HyperbandOracle(max_epochs=cfg.train.epochs, factor=HYPERBAND_FACTOR, **common)
    # HyperbandOracle takes no max_trials argument, but the base Oracle
    # stops creating trials once it has max_trials of them.
    oracle.max_trials = cfg.max_trials
    return oracle


def distributed_role():
    """Return "single", "chief" or "worker" from Keras Tuner's environment variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    missing = [name for name in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if name not in os.environ]
    if missing:
        raise ValueError(
            f"KERASTUNER_ORACLE_IP is set, so distributed tuning needs {' and '.join(missing)} as well; set "
            "KERASTUNER_TUNER_ID=chief for the chief and a unique name such as worker0 for each worker."
        )
    # Keras Tuner treats every tuner id that contains "chief" as the chief.
    return "chief" if CHIEF_ID in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def distributed_environment(role, worker_id=None, ip="127.0.0.1", port=None):
    """Return the environment variables that make this process a chief or a worker.

    Args:
        role: "chief" or "worker".
        worker_id: str, a unique worker name such as "worker0"; required for
            a worker. Keras Tuner takes any name that contains "chief" for
            the chief, so such names are rejected.
        ip: str, the chief's address. Defaults to "127.0.0.1".
        port: int in [1, 65535], the chief's port.

    Returns:
        dict with KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and
        KERASTUNER_ORACLE_PORT.
    """
    config.check_choice("role", role, ("chief", "worker"))
    if port is None:
        raise ValueError("Distributed tuning needs the chief's port, such as --oracle-port 8000; received none.")
    port = config.check_int("oracle_port", port, minimum=1)
    if port > 65535:
        raise ValueError(f"`oracle_port` must be an integer in [1, 65535]; received {port!r}.")
    if not isinstance(ip, str) or not ip:
        raise ValueError(f"`oracle_ip` must be an address such as '127.0.0.1'; received {ip!r}.")
    if role == "worker" and (not isinstance(worker_id, str) or not worker_id or CHIEF_ID in worker_id):
        raise ValueError(
            f"A worker needs a unique name without 'chief' in it, such as 'worker0'; received {worker_id!r}."
        )
    return {
        "KERASTUNER_TUNER_ID": CHIEF_ID if role == "chief" else worker_id,
        "KERASTUNER_ORACLE_IP": ip,
        "KERASTUNER_ORACLE_PORT": str(port),
    }


def resident_memory_mib():
    """Return this process's resident memory in MiB, or None where /proc is missing."""
    try:
        pages = int(pathlib.Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def project_dir(cfg):
    """Return the project folder of `cfg`: `directory/project_name`."""
    name = cfg.project_name or f"{cfg.family}-{cfg.tuner}"
    return pathlib.Path(cfg.directory) / name


def tune(cfg=None, callbacks=()):
    """Run or resume a Keras Tuner search and write its report.

    Rerunning an interrupted search with the same settings resumes it. In a
    distributed search (see `distributed_role`), the chief serves the oracle
    and writes the report once every worker has finished. A worker trains
    the trials it is given and writes no report.

    Args:
        cfg: `TuneConfig`, or None for the defaults.
        callbacks: sequence of `keras.callbacks.Callback`, added to every
            trial's `model.fit`.

    Returns:
        `TuneResult`.

    Raises:
        ValueError, TypeError: for invalid settings or data.
        training.RunExistsError: if the project folder contains a search
            with other settings and `cfg.overwrite` is False.
        RuntimeError: if `MAX_CONSECUTIVE_FAILED_TRIALS` trials in a row
            failed or no trial completed.
    """
    cfg = cfg or TuneConfig()
    role = distributed_role()
    _check_tune_config(cfg)
    directory = project_dir(cfg)
    overwrite = _check_project(directory, cfg, role)
    keras.utils.set_random_seed(cfg.train.seed)

    datasets = data_lib.load_datasets(
        cfg.train.data,
        batch_size=cfg.train.batch_size,
        image_size=cfg.train.image_size,
        validation_split=cfg.train.validation_split,
        seed=cfg.train.seed,
        skip_bad_images=cfg.train.skip_bad_images,
        channels=cfg.train.channels,
    )
    hypermodel = ResNetHyperModel(
        datasets,
        family=cfg.family,
        depths=cfg.depths,
        widths=cfg.widths,
        learning_rate_range=cfg.learning_rate_range,
        weight_decay_range=cfg.weight_decay_range,
        train_config=cfg.train,
        budget=cfg.budget,
    )
    _check_budget_reachable(hypermodel, cfg.budget)

    deadline = None if cfg.max_minutes is None else _clock() + cfg.max_minutes * 60
    tuner = ResNetTuner(
        make_oracle(cfg),
        hypermodel,
        deadline=deadline,
        directory=str(directory.parent),
        project_name=directory.name,
        overwrite=overwrite,
    )
    if role != "worker":
        _write_json(directory / CONFIG_FILE, _config_record(cfg))
    logger.info("Tuning in %s as %s (%s search, at most %d trials)", directory, role, cfg.tuner, cfg.max_trials)

    try:
        tuner.search(
            datasets.train,
            validation_data=datasets.validation,
            epochs=cfg.train.epochs,
            steps_per_epoch=cfg.steps_per_epoch,
            validation_steps=cfg.validation_steps,
            callbacks=list(callbacks),
            verbose=cfg.verbose,
        )
    except SearchTimeLimit:
        logger.info("Stopped after %s minutes; rerun the same search to continue it", cfg.max_minutes)
    except RuntimeError as error:
        if "consecutive failures" not in str(error):
            raise
        raise RuntimeError(
            f"{MAX_CONSECUTIVE_FAILED_TRIALS} trials in a row failed or were over budget; loosen the budget or "
            f"check the trial messages in {directory}/trial_*/trial.json."
        ) from error

    result = TuneResult(
        project_dir=directory, role=role, rows=[], trials_run=tuner.trials_run, time_limit_reached=tuner.time_limit_reached
    )
    if role == "worker":
        return result
    return _finish(tuner, result)


def _finish(tuner, result):
    """Write the table, the plot and the best model of a finished search."""
    directory = result.project_dir
    result.rows = report.trial_rows(tuner.oracle.trials.values(), directory)
    result.table = report.write_csv(result.rows, directory / report.TABLE_FILE)
    result.plot = report.plot_pareto(result.rows, directory / report.PLOT_FILE)
    completed = [row for row in result.rows if row["status"] == "completed"]
    if not completed:
        raise RuntimeError(f"No trial of the search in {directory} completed; see {result.table} for their status.")

    best_trial = tuner.oracle.get_best_trials(1)[0]
    result.best = next(row for row in result.rows if row["trial"] == best_trial.trial_id)
    model = tuner.get_best_models(1)[0]
    result.best_model = directory / BEST_MODEL_FILE
    with saving.atomic_path(result.best_model) as temporary:
        model.save(temporary)
    logger.info("Best trial %s (%s=%.4f) saved as %s", best_trial.trial_id, OBJECTIVE, best_trial.score, result.best_model)
    return result


def _check_tune_config(cfg):
    config.check_choice("tuner", cfg.tuner, TUNERS)
    config.check_int("max_trials", cfg.max_trials, minimum=1)
    # Each trial sets the depth and width; a valid placeholder lets
    # `check_config` validate the other training settings.
    training.check_config(dataclasses.replace(cfg.train, family=None, depth=20, width=1.0))
    if not cfg.train.validation_split > 0:
        raise ValueError(
            f"Tuning maximises {OBJECTIVE}, so `validation_split` must be > 0; received {cfg.train.validation_split!r}."
        )
    for name in ("steps_per_epoch", "validation_steps"):
        if getattr(cfg, name) is not None:
            config.check_int(name, getattr(cfg, name), minimum=1)
    if cfg.max_minutes is not None:
        config.check_positive_number("max_minutes", cfg.max_minutes)
    if not isinstance(cfg.budget, budget_lib.Budget):
        raise TypeError(f"`budget` must be a keras_resnet.budget.Budget; received {cfg.budget!r}.")
    if cfg.verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 0, 1 or 2; received {cfg.verbose!r}.")


def _config_record(cfg):
    record = dataclasses.asdict(cfg)
    for name in (*RESUMABLE_CHANGES, "overwrite", "directory", "project_name"):
        record.pop(name)
    for name in training.RESUMABLE_CHANGES:
        record["train"].pop(name)
    return json.loads(json.dumps(record, default=str))


def _check_project(directory, cfg, role):
    """Check the project folder; return True when Keras Tuner should delete it first."""
    for folder in (directory, *directory.parents):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"The tuning project '{directory}' cannot be a folder because '{folder}' is a file.")
    # A worker follows the chief, which checks the settings and deletes an
    # old project before any worker starts.
    if role == "worker" or not directory.exists():
        return False

    saved_path = directory / CONFIG_FILE
    try:
        saved = json.loads(saved_path.read_text())
    except FileNotFoundError:
        saved = None
    except (OSError, ValueError):
        saved = {}
    if saved is None and not (directory / "oracle.json").exists():
        return False

    current = _config_record(cfg)
    changes = [] if saved is None else _differences(saved, current)
    if saved is not None and not changes:
        logger.info("Resuming the search in %s", directory)
        return False
    if cfg.overwrite:
        return True
    problem = f"other settings ({'; '.join(changes)})" if changes else f"a search without a readable {CONFIG_FILE}"
    raise training.RunExistsError(
        f"'{directory}' contains {problem}; pass --overwrite to delete it and start afresh, or choose another "
        "--project-name."
    )


def _differences(saved, current, prefix=""):
    changes = []
    for name in sorted(set(saved) | set(current)):
        old, new = saved.get(name), current.get(name)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += _differences(old, new, prefix=f"{prefix}{name}.")
        elif old != new:
            changes.append(f"{prefix}{name}: {old!r} -> {new!r}")
    return changes


def _check_budget_reachable(hypermodel, budget):
    """Raise a ValueError when even the smallest model of the space is over the budget."""
    if budget == budget_lib.Budget(latency_batch_size=budget.latency_batch_size):
        return
    hp = keras_tuner.HyperParameters()
    hp.values.update({"depth": min(hypermodel.depths), "width": min(hypermodel.widths)})
    keras.backend.clear_session()
    smallest = hypermodel.build(hp)
    problems = budget.violations(budget_lib.measure(smallest, budget))
    if problems:
        raise ValueError(
            f"No model of the search space fits the budget: the smallest, depth {min(hypermodel.depths)} at width "
            f"{min(hypermodel.widths)}, has {'; '.join(problems)}. Raise the budget or search smaller models."
        )
    del smallest
    keras.backend.clear_session()

