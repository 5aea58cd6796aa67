import csv
import json

import keras
import keras_tuner
import numpy as np
import pytest

import keras_resnet
from keras_resnet import budget
from keras_resnet import data
from keras_resnet import training
from keras_resnet import tuning


@pytest.fixture(scope="module")
def datasets():
    return data.load_datasets("sample", batch_size=32)


def small_config(directory, **overrides):
    """A search of 3 one-epoch trials of 2 steps over ResNet-8 at two widths."""
    settings = {
        "tuner": "random",
        "max_trials": 3,
        "depths": (8,),
        "widths": (0.25, 0.5),
        "train": training.TrainConfig(epochs=1, batch_size=32),
        "steps_per_epoch": 2,
        "validation_steps": 2,
        "directory": str(directory),
    }
    settings.update(overrides)
    return tuning.TuneConfig(**settings)


def declared_space(hypermodel):
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    return {item.name: item.get_config() for item in hp.space}


def test_hyperparameter_names_and_defaults(datasets):
    space = declared_space(tuning.ResNetHyperModel(datasets))
    assert list(space) == ["depth", "width", "learning_rate", "weight_decay"]
    assert space["depth"]["values"] == [8, 14, 20, 32, 44, 56]
    assert space["depth"]["default"] == 20
    assert space["width"]["values"] == [0.25, 0.5, 1.0, 2.0]
    assert space["width"]["default"] == 1.0
    assert (space["learning_rate"]["min_value"], space["learning_rate"]["max_value"]) == (0.01, 0.5)
    assert space["learning_rate"]["sampling"] == "log"
    assert space["learning_rate"]["default"] == 0.1
    assert (space["weight_decay"]["min_value"], space["weight_decay"]["max_value"]) == (5e-4, 5e-2)
    assert space["weight_decay"]["sampling"] == "log"
    assert space["weight_decay"]["default"] == 5e-3


def test_imagenet_space_defaults_to_resnet50(datasets):
    space = declared_space(tuning.ResNetHyperModel(datasets, family="imagenet"))
    assert space["depth"]["values"] == [18, 34, 50, 101, 152]
    assert space["depth"]["default"] == 50


def test_defaults_follow_a_narrowed_space(datasets):
    hypermodel = tuning.ResNetHyperModel(
        datasets, depths=(8, 14), widths=(0.5,), learning_rate_range=(0.2, 0.4), weight_decay_range=(1e-4, 1e-3)
    )
    space = declared_space(hypermodel)
    assert space["depth"]["default"] == 8
    assert space["width"]["default"] == 0.5
    assert space["learning_rate"]["default"] == 0.2
    assert space["weight_decay"]["default"] == 1e-3


@pytest.mark.parametrize(
    "arguments, error, received",
    [
        ({"depths": (8, 9)}, ValueError, "9"),
        ({"depths": (8, 8)}, ValueError, "(8, 8)"),
        ({"widths": ()}, ValueError, "empty"),
        ({"widths": (0.0,)}, ValueError, "0.0"),
        ({"widths": "0.5"}, TypeError, "'0.5'"),
        ({"learning_rate_range": (0.5, 0.1)}, ValueError, "(0.5, 0.1)"),
        ({"family": "resnet"}, ValueError, "'resnet'"),
    ],
)
def test_search_space_rejects_invalid_values(datasets, arguments, error, received):
    with pytest.raises(error) as info:
        tuning.ResNetHyperModel(datasets, **arguments)
    assert received in str(info.value)


def test_over_budget_model_is_not_trained(datasets, tmp_path):
    hypermodel = tuning.ResNetHyperModel(datasets, depths=(8,), widths=(0.5,), budget=budget.Budget(max_params=1000))
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]

    with pytest.raises(keras_tuner.errors.FailedTrialError, match="19,218 trainable parameters exceed"):
        hypermodel.fit(hp, model, datasets.train, epochs=1, steps_per_epoch=1, trial_dir=tmp_path)

    assert not model.compiled
    for old, weight in zip(before, model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), old)
    measures = json.loads((tmp_path / "measures.json").read_text())
    assert measures["params"] == 19_218
    assert "max_params=1,000" in measures["rejected"]
    assert "seconds" not in measures


def test_latency_budget_rejects_before_training(datasets, tmp_path):
    hypermodel = tuning.ResNetHyperModel(
        datasets, depths=(8,), widths=(0.25,), budget=budget.Budget(max_latency_ms=1e-6, latency_batch_size=2)
    )
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)

    with pytest.raises(keras_tuner.errors.FailedTrialError, match="ms per image at batch size 2 exceeds"):
        hypermodel.fit(hp, model, datasets.train, epochs=1, steps_per_epoch=1, trial_dir=tmp_path)

    assert not model.compiled
    assert json.loads((tmp_path / "measures.json").read_text())["latency_ms"] > 1e-6


def test_search_writes_report_and_best_model(tmp_path):
    cfg = small_config(tmp_path)
    result = tuning.tune(cfg)

    assert result.role == "single"
    assert [row["trial"] for row in result.rows] == ["0", "1", "2"]
    assert result.trials_run == ["0", "1", "2"]
    for row in result.rows:
        assert row["status"] == "completed"
        assert row["depth"] == 8
        assert row["width"] in (0.25, 0.5)
        assert row["params"] == {0.25: 5006, 0.5: 19_218}[row["width"]]
        assert row["flops"] > 0
        assert 0.01 <= row["learning_rate"] <= 0.5
        assert 0 <= row["val_accuracy"] <= 1
        assert row["seconds"] > 0
        assert row["epochs"] == 1
    assert result.best["val_accuracy"] == max(row["val_accuracy"] for row in result.rows)

    with open(result.table, newline="") as handle:
        assert [r["trial"] for r in csv.DictReader(handle)] == ["0", "1", "2"]
    assert result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = keras_resnet.load_model(result.best_model, compile=False)
    assert model.count_params() > 0
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == result.best["params"]
    assert model.get_layer("input_normalize") is not None
    assert (tmp_path / "cifar-random" / "tune_config.json").exists()

    # The same search again finds every trial done and trains nothing.
    keras.backend.clear_session()
    again = tuning.tune(cfg)
    assert again.trials_run == []
    assert [row["val_accuracy"] for row in again.rows] == [row["val_accuracy"] for row in result.rows]

    with pytest.raises(training.RunExistsError, match=r"train\.epochs: 1 -> 2"):
        tuning.tune(small_config(tmp_path, train=training.TrainConfig(epochs=2, batch_size=32)))


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tests the search loop, not the backend; runs under tensorflow"
)
def test_time_limit_stops_then_rerun_continues(tmp_path, monkeypatch):
    # The clock reads 0 when the search starts, 1 before the first trial
    # and 1000 before the second, past the limit of 1 minute.
    readings = iter([0.0, 1.0, 1000.0])
    monkeypatch.setattr(tuning, "_clock", lambda: next(readings))
    cfg = small_config(tmp_path, max_trials=2, max_minutes=1.0)

    stopped = tuning.tune(cfg)

    assert stopped.time_limit_reached
    assert stopped.trials_run == ["0"]
    assert [row["status"] for row in stopped.rows] == ["completed"]
    monkeypatch.setattr(tuning, "_clock", lambda: 0.0)
    keras.backend.clear_session()
    resumed = tuning.tune(cfg)
    assert not resumed.time_limit_reached
    assert resumed.trials_run == ["1"]
    assert [row["status"] for row in resumed.rows] == ["completed", "completed"]


def test_unreachable_budget_stops_before_search(tmp_path):
    with pytest.raises(ValueError, match="smallest, depth 8 at width 0.25, has 5,006 trainable parameters"):
        tuning.tune(small_config(tmp_path, budget=budget.Budget(max_params=100)))
    assert not (tmp_path / "cifar-random" / "oracle.json").exists()


def test_search_needs_validation_split(tmp_path):
    with pytest.raises(ValueError, match="validation_split") as info:
        tuning.tune(small_config(tmp_path, train=training.TrainConfig(validation_split=0.0)))
    assert "0.0" in str(info.value)


def test_distributed_environment():
    assert tuning.distributed_environment("chief", port=8000) == {
        "KERASTUNER_TUNER_ID": "chief",
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": "8000",
    }
    assert tuning.distributed_environment("worker", "worker3", port=8000)["KERASTUNER_TUNER_ID"] == "worker3"
    with pytest.raises(ValueError, match="'mychief'"):
        tuning.distributed_environment("worker", "mychief", port=8000)
    with pytest.raises(ValueError, match="70000"):
        tuning.distributed_environment("chief", port=70000)
    with pytest.raises(ValueError, match="port"):
        tuning.distributed_environment("chief")


def test_distributed_role_needs_all_variables(monkeypatch):
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    assert tuning.distributed_role() == "single"
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.delenv("KERASTUNER_ORACLE_PORT", raising=False)
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker0")
    with pytest.raises(ValueError, match="KERASTUNER_ORACLE_PORT"):
        tuning.distributed_role()
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    assert tuning.distributed_role() == "worker"
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert tuning.distributed_role() == "chief"
