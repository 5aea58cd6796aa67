"""The report of a tuning search: a table of trials and a Pareto plot.

`trial_rows` joins Keras Tuner's trials with the measures each trial wrote
(`trial_*/measures.json`). `write_csv` saves the rows as `trials.csv`, and
`format_table` lays them out for a terminal. `plot_pareto` draws validation
accuracy against trainable parameters into `pareto.png` and marks the
Pareto front: the trials that no other trial beats on both accuracy and
size.
"""

import csv
import io
import json
import pathlib

from keras_resnet import saving

TABLE_FILE = "trials.csv"
PLOT_FILE = "pareto.png"
COLUMNS = (
    "trial",
    "status",
    "depth",
    "width",
    "params",
    "flops",
    "learning_rate",
    "weight_decay",
    "epochs",
    "val_accuracy",
    "seconds",
    "latency_ms",
    "from_trial",
    "message",
)
# Keras Tuner's trial states, as the report names them. A FAILED trial that
# the budget rejected is reported as "over budget" instead.
STATUS_NAMES = {"COMPLETED": "completed", "FAILED": "failed", "INVALID": "failed", "RUNNING": "running", "IDLE": "running"}


def trial_rows(trials, project_dir):
    """Return one dict per trial with the keys of `COLUMNS`, sorted by trial id.

    Args:
        trials: iterable of `keras_tuner.engine.trial.Trial`.
        project_dir: path of the tuning project, which contains a
            `trial_<id>/measures.json` for every trial that got as far as
            being measured.

    Returns:
        list of dict. Numbers the trial did not produce are None.
    """
    rows = []
    # Keras Tuner pads trial ids with zeros to the width of max_trials. A
    # resume with a larger max_trials changes that width, so ids sort by
    # number.
    for trial in sorted(trials, key=lambda t: int(t.trial_id)):
        values = trial.hyperparameters.values
        measures = _read_measures(pathlib.Path(project_dir) / f"trial_{trial.trial_id}" / "measures.json")
        status = STATUS_NAMES.get(trial.status, str(trial.status).lower())
        if trial.status == "FAILED" and measures.get("rejected"):
            status = "over budget"
        message = measures.get("rejected") if status == "over budget" else None
        if status == "failed" and trial.message:
            message = trial.message.strip().splitlines()[-1]
        rows.append(
            {
                "trial": trial.trial_id,
                "status": status,
                "depth": values.get("depth"),
                "width": values.get("width"),
                "params": measures.get("params"),
                "flops": measures.get("flops"),
                "learning_rate": values.get("learning_rate"),
                "weight_decay": values.get("weight_decay"),
                "epochs": measures.get("epochs"),
                "val_accuracy": float(trial.score) if trial.status == "COMPLETED" else None,
                "seconds": measures.get("seconds"),
                "latency_ms": measures.get("latency_ms"),
                "from_trial": values.get("tuner/trial_id"),
                "message": message,
            }
        )
    return rows


def _read_measures(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def pareto_front(rows, cost="params"):
    """Return the completed rows that no other completed row dominates, by rising cost.

    A row dominates another when its `cost` is no higher, its validation
    accuracy no lower, and one of the two is strictly better.

    Args:
        rows: list of dict from `trial_rows`.
        cost: "params" or "flops", the measure to minimise.

    Returns:
        list of dict.
    """
    points = [row for row in rows if row["status"] == "completed" and row[cost] is not None]
    front = [
        row
        for row in points
        if not any(
            other[cost] <= row[cost]
            and other["val_accuracy"] >= row["val_accuracy"]
            and (other[cost] < row[cost] or other["val_accuracy"] > row["val_accuracy"])
            for other in points
        )
    ]
    return sorted(front, key=lambda row: (row[cost], -row["val_accuracy"]))


def write_csv(rows, path):
    """Write `rows` as CSV with the header `COLUMNS`; return the path."""
    path = pathlib.Path(path)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({name: "" if row[name] is None else row[name] for name in COLUMNS})
    saving.atomic_write_text(path, buffer.getvalue())
    return path


def format_table(rows):
    """Return `rows` as a fixed-width text table, one line per trial."""
    headers = ("trial", "status", "depth", "width", "params", "FLOPs", "lr", "wd", "val_acc", "seconds")
    lines = [headers]
    for row in rows:
        lines.append(
            (
                str(row["trial"]),
                row["status"],
                _text(row["depth"], "{}"),
                _text(row["width"], "{:g}"),
                _text(row["params"], "{:,}"),
                _text(None if row["flops"] is None else row["flops"] / 1e6, "{:,.1f}M"),
                _text(row["learning_rate"], "{:.4g}"),
                _text(row["weight_decay"], "{:.3g}"),
                _text(row["val_accuracy"], "{:.4f}"),
                _text(row["seconds"], "{:.1f}"),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def _text(value, pattern):
    return "-" if value is None else pattern.format(value)


def plot_pareto(rows, path, cost="params"):
    """Plot validation accuracy against `cost` with the Pareto front; return the path.

    Completed trials are dots labelled with their trial id; the Pareto front
    is drawn as a red step line through red-ringed points. The title counts
    the trials that are not plotted because they did not complete.

    Args:
        rows: list of dict from `trial_rows`.
        path: path of the PNG file, written through a temporary file.
        cost: "params" (the default) or "flops".
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    path = pathlib.Path(path)
    points = [row for row in rows if row["status"] == "completed" and row[cost] is not None]
    front = pareto_front(rows, cost)
    label = {"params": "trainable parameters", "flops": "FLOPs (multiply-adds per image)"}[cost]

    figure, axis = plt.subplots(figsize=(8, 5))
    axis.scatter([row[cost] for row in points], [row["val_accuracy"] for row in points], color="tab:blue", label="trial")
    for row in points:
        axis.annotate(str(row["trial"]), (row[cost], row["val_accuracy"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if front:
        axis.step(
            [row[cost] for row in front], [row["val_accuracy"] for row in front], where="post", color="tab:red", alpha=0.6
        )
        axis.scatter(
            [row[cost] for row in front],
            [row["val_accuracy"] for row in front],
            s=160,
            facecolors="none",
            edgecolors="tab:red",
            linewidths=2,
            label="Pareto front",
        )
    if points and max(row[cost] for row in points) > 2 * min(row[cost] for row in points):
        axis.set_xscale("log")
    axis.set_xlabel(label)
    axis.set_ylabel("best validation accuracy")
    not_plotted = len(rows) - len(points)
    axis.set_title(
        f"Best validation accuracy of {len(points)} completed trials"
        + (f" ({not_plotted} others not completed, not plotted)" if not_plotted else "")
    )
    axis.grid(alpha=0.3)
    # "best" keeps the legend off the points, which the corners often are.
    axis.legend(loc="best")
    figure.tight_layout()

    with saving.atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)
    return path

