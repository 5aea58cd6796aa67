import csv

import keras
import pytest

from keras_resnet import report

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tables and plots only, backend-independent; runs under tensorflow"
)


def row(trial, params, accuracy, status="completed"):
    return {name: None for name in report.COLUMNS} | {
        "trial": trial,
        "status": status,
        "params": params,
        "flops": params * 100,
        "val_accuracy": accuracy,
    }


ROWS = [
    row("0", 1000, 0.30),
    row("1", 2000, 0.50),
    row("2", 3000, 0.40),  # dominated by trial 1: larger and less accurate
    row("3", 4000, 0.60),
    row("4", 1000, 0.20),  # dominated by trial 0: as large, less accurate
    row("5", 500, None, status="over budget"),
]


def test_pareto_front_keeps_undominated_trials():
    front = report.pareto_front(ROWS)
    assert [r["trial"] for r in front] == ["0", "1", "3"]


def test_pareto_front_keeps_ties():
    rows = [row("0", 1000, 0.5), row("1", 1000, 0.5)]
    assert len(report.pareto_front(rows)) == 2


def test_pareto_front_by_flops():
    rows = [row("0", 1000, 0.5), row("1", 2000, 0.4) | {"flops": 50_000}]
    assert [r["trial"] for r in report.pareto_front(rows, cost="flops")] == ["1", "0"]


def test_csv_has_every_trial(tmp_path):
    path = report.write_csv(ROWS, tmp_path / "trials.csv")
    with open(path, newline="") as handle:
        written = list(csv.DictReader(handle))
    assert tuple(written[0]) == report.COLUMNS
    assert [r["trial"] for r in written] == [r["trial"] for r in ROWS]
    assert written[1]["params"] == "2000"
    assert written[5]["val_accuracy"] == ""
    assert not list(tmp_path.glob(".tmp-*"))


def test_table_aligns_and_marks_missing_values():
    lines = report.format_table(ROWS).splitlines()
    assert lines[0].split() == ["trial", "status", "depth", "width", "params", "FLOPs", "lr", "wd", "val_acc", "seconds"]
    assert len(lines) == len(ROWS) + 1
    assert "2,000" in lines[2]
    assert "0.5000" in lines[2]
    assert "over budget" in lines[6]
    assert len({len(line) for line in lines[:6]}) == 1


@pytest.mark.parametrize("cost", ["params", "flops"])
def test_plot_is_png(tmp_path, cost):
    path = report.plot_pareto(ROWS, tmp_path / "pareto.png", cost=cost)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".tmp-*"))
