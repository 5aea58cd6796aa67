import json

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_resnet
from keras_resnet import data
from keras_resnet import training


def test_short_fit_lowers_loss_and_moves_batchnorm_statistics():
    ds = data.load_datasets("sample", batch_size=64, augment=False, validation_split=0)
    batches = ds.train.take(4).cache()
    model = keras_resnet.build(depth=8, input_normalization=(ds.mean, ds.std))
    cfg = training.TrainConfig(depth=8, epochs=10, batch_size=64, learning_rate=0.05, warmup_epochs=1)
    model.compile(
        optimizer=training.make_optimizer(model, cfg, steps_per_epoch=4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    bn = model.get_layer("stage2_block1_bn1")
    mean_before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    loss_before = model.evaluate(batches, verbose=0)[0]

    model.fit(batches, epochs=10, verbose=0, shuffle=False)

    loss_after = model.evaluate(batches, verbose=0)[0]
    assert loss_after < 0.8 * loss_before
    assert not np.allclose(keras.ops.convert_to_numpy(bn.moving_mean), mean_before)


def test_pipeline_feeds_any_backend_fit():
    ds = data.load_datasets("sample", batch_size=32)
    model = keras_resnet.build(depth=8, input_normalization=(ds.mean, ds.std))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    history = model.fit(ds.train.take(2), validation_data=ds.validation.take(1), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    assert keras.backend.backend() in ("tensorflow", "jax", "torch")
    assert isinstance(ds.train, tf.data.Dataset)


def test_weight_decay_skips_batchnorm_and_bias():
    model = keras_resnet.build(depth=8)
    cfg = training.TrainConfig(epochs=1, learning_rate=0.1, weight_decay=0.01, warmup_epochs=0)
    optimizer = training.make_optimizer(model, cfg, steps_per_epoch=10)
    kernel = model.get_layer("stem_conv1").kernel
    gamma = model.get_layer("stem_bn1").gamma
    bias = model.get_layer("head_dense").bias
    gamma.assign(keras.ops.full(gamma.shape, 2.0))
    bias.assign(keras.ops.full(bias.shape, 1.0))
    before = {w.path: keras.ops.convert_to_numpy(w).copy() for w in (kernel, gamma, bias)}

    zeros = [keras.ops.zeros(w.shape) for w in model.trainable_weights]
    optimizer.apply_gradients(zip(zeros, model.trainable_weights))

    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), before[kernel.path] * (1 - 0.1 * 0.01), rtol=1e-6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(gamma), before[gamma.path])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bias), before[bias.path])


def test_learning_rate_warms_up_then_decays():
    cfg = training.TrainConfig(epochs=10, batch_size=256, learning_rate=0.1, warmup_epochs=2)
    schedule = training.make_schedule(cfg, steps_per_epoch=100)
    lr = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    # Batch 256 doubles the peak learning rate given for batch 128.
    assert lr(0) == pytest.approx(0.0)
    assert lr(100) == pytest.approx(0.1)
    assert lr(200) == pytest.approx(0.2)
    assert lr(600) == pytest.approx(0.1, rel=1e-3)
    assert lr(1000) == pytest.approx(0.0, abs=1e-6)


def test_run_dir_moves_past_finished_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(training.resolve_run_dir(None, "resnet20")) == "runs/resnet20"
    (tmp_path / "runs" / "resnet20").mkdir(parents=True)
    (tmp_path / "runs" / "resnet20" / "metrics.json").write_text("{}")
    assert str(training.resolve_run_dir(None, "resnet20")) == "runs/resnet20-2"
    assert str(training.resolve_run_dir("mine", "resnet20")) == "mine"


def test_finished_run_is_not_overwritten(tmp_path):
    (tmp_path / "metrics.json").write_text('{"val_accuracy": 0.9}')
    with pytest.raises(training.RunExistsError, match="--overwrite") as info:
        training.train(training.TrainConfig(depth=8, epochs=1), output=tmp_path)
    assert str(tmp_path) in str(info.value)
    assert (tmp_path / "metrics.json").read_text() == '{"val_accuracy": 0.9}'


@pytest.mark.parametrize(
    "changes, received",
    [
        ({"epochs": 0}, "0"),
        ({"learning_rate": -1.0}, "-1.0"),
        ({"learning_rate": float("nan")}, "nan"),
        ({"momentum": 1.5}, "1.5"),
        ({"depth": 21}, "21"),
        ({"weight_decay": float("nan")}, "nan"),
        ({"warmup_epochs": float("inf")}, "inf"),
        ({"validation_split": 1.0}, "1.0"),
        ({"seed": -1}, "-1"),
        ({"precision": "half"}, "'half'"),
        ({"model": "resnet51"}, "'resnet51'"),
        ({"model": "resnet50", "depth": 20}, "depth=20"),
    ],
)
def test_invalid_config_message(tmp_path, changes, received):
    cfg = training.TrainConfig(**changes)
    with pytest.raises(ValueError) as info:
        training.train(cfg, output=tmp_path)
    assert received in str(info.value)
    assert not (tmp_path / "model.keras").exists()


class PoisonWeights(keras.callbacks.Callback):
    """Set every kernel to NaN when epoch `epoch` begins (0-based)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            for weight in self.model.trainable_weights:
                if weight.name == "kernel":
                    weight.assign(keras.ops.full(weight.shape, float("nan")))


def test_nan_loss_stops_and_keeps_best_model(tmp_path):
    cfg = training.TrainConfig(depth=8, epochs=3, verbose=0)
    with pytest.raises(FloatingPointError, match="NaN") as info:
        training.train(cfg, output=tmp_path, callbacks=[PoisonWeights(epoch=1)])
    assert str(tmp_path / "model.keras") in str(info.value)
    assert not (tmp_path / "metrics.json").exists()

    model = keras_resnet.load_model(tmp_path / "model.keras")
    kernel = keras.ops.convert_to_numpy(model.get_layer("stem_conv1").kernel)
    assert np.isfinite(kernel).all()


def test_overwrite_keeps_files_when_input_is_bad(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n")
    cfg = training.TrainConfig(depth=8, epochs=1, data=str(tmp_path / "typo"))
    with pytest.raises(ValueError, match="does not exist"):
        training.train(cfg, output=tmp_path, overwrite=True)
    assert (tmp_path / "metrics.json").read_text() == "{}"
    assert (tmp_path / "history.csv").exists()


def test_resume_with_other_settings_is_rejected(tmp_path):
    (tmp_path / "backup").mkdir()
    saved = training._config_record(training.TrainConfig(depth=8, epochs=4))
    (tmp_path / "run_config.json").write_text(json.dumps(saved))
    with pytest.raises(training.RunExistsError, match="other settings") as info:
        training.train(training.TrainConfig(depth=8, epochs=6), output=tmp_path)
    assert "epochs: 4 -> 6" in str(info.value)
    assert "--overwrite" in str(info.value)


def test_stopped_run_without_backup_is_rejected(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss\n0,nan\n")
    with pytest.raises(training.RunExistsError, match="without a backup"):
        training.train(training.TrainConfig(depth=8, epochs=1), output=tmp_path)


def test_output_under_a_file_is_rejected(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file") as info:
        training.train(training.TrainConfig(depth=8, epochs=1), output=tmp_path / "afile" / "run")
    assert "afile" in str(info.value)


def test_images_smaller_than_network_minimum(tmp_path):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8)).save(tmp_path / "data" / name / f"{i}.png")
    cfg = training.TrainConfig(depth=18, epochs=1, data=str(tmp_path / "data"), validation_split=0)
    with pytest.raises(ValueError, match="--image-size 32") as info:
        training.train(cfg, output=tmp_path / "run")
    assert "8x8" in str(info.value)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the variant reaches build() the same way under every backend; test_variant_training.py trains the "
    "variants under each",
)
def test_named_variant_trains_and_names_its_run(tmp_path):
    cfg = training.TrainConfig(model="resnet18d", width=0.125, epochs=1, batch_size=64, verbose=0)
    metrics = training.train(cfg, output=tmp_path)
    assert metrics["variant"] == "resnet18d"
    assert (metrics["family"], metrics["depth"]) == ("imagenet", 18)

    model = keras_resnet.load_model(tmp_path / "model.keras")
    expected = keras_resnet.build("resnet18d", width=0.125, num_classes=10, input_shape=(32, 32, 3))
    assert model.name == "resnet18d_w0.125"
    added_by_training = ("input_normalize", "head_labels")
    names = [layer.name for layer in model.layers if layer.name not in added_by_training]
    assert names == [layer.name for layer in expected.layers]
    assert metrics["params"] == sum(int(np.prod(w.shape)) for w in expected.trainable_weights)


def test_default_network_is_resnet20():
    arch = training.check_config(training.TrainConfig())
    assert (arch.family, arch.depth) == ("cifar", 20)


def test_mixed_bfloat16_computes_the_classifier_in_float32(tmp_path):
    cfg = training.TrainConfig(depth=8, epochs=1, batch_size=64, precision="mixed_bfloat16", verbose=0)
    metrics = training.train(cfg, output=tmp_path)
    assert metrics["precision"] == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"

    model = keras_resnet.load_model(tmp_path / "model.keras")
    assert model.get_layer("stage1_block1_conv1").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("stage1_block1_conv1").kernel.dtype == "float32"
    assert model.get_layer("head_dense").dtype_policy.name == "float32"
    probabilities = model.predict(np.full((2, 32, 32, 3), 128.0, "float32"), verbose=0)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "gpu, bfloat16, expected",
    [(False, True, "mixed_bfloat16"), (False, False, "float32"), (True, True, "float32")],
)
def test_auto_precision_follows_the_device(monkeypatch, gpu, bfloat16, expected):
    monkeypatch.setattr(training, "_has_gpu", lambda: gpu)
    monkeypatch.setattr(training, "_cpu_has_bfloat16", lambda: bfloat16)
    assert training.resolve_precision("auto") == expected
    assert training.resolve_precision("mixed_float16") == "mixed_float16"
