import os
import subprocess
import sys

import numpy as np
import pytest

import keras
import keras_resnet
from conftest import run_python

LOAD_AND_PREDICT = """
import sys
import numpy as np
import keras
import keras_resnet  # registers ZeroPadShortcut

model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
print(keras.backend.backend())
"""


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    model = keras_resnet.build(depth=8, input_normalization=((120, 120, 110), (60, 60, 65)))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    # One step makes the BatchNorm statistics differ from their initial values.
    model.fit(x, np.arange(4), epochs=1, verbose=0)
    path = folder / "model.keras"
    model.save(path)
    np.save(folder / "x.npy", x)
    return folder, model.predict(x, verbose=0)


def test_reload_in_fresh_process_predicts_identically(saved_model):
    folder, expected = saved_model
    result = run_python(LOAD_AND_PREDICT, folder / "model.keras", folder / "x.npy", folder / "out.npy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(keras.backend.backend())
    np.testing.assert_array_equal(np.load(folder / "out.npy"), expected)


# Each backend's run reloads on the next backend in this cycle, so every
# backend both saves and loads once across the three runs of the suite.
NEXT_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}


def test_reload_on_another_backend(saved_model):
    backend = NEXT_BACKEND[keras.backend.backend()]
    folder, expected = saved_model

    out = folder / f"out_{backend}.npy"
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, folder / "model.keras", folder / "x.npy", out],
        env=dict(os.environ, KERAS_BACKEND=backend),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(backend)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)


def test_saved_model_has_no_unsafe_layers(saved_model):
    folder, _ = saved_model
    # safe_mode=True is the default; it rejects Lambda layers and pickled code.
    model = keras.saving.load_model(folder / "model.keras", safe_mode=True)
    assert model.get_layer("stage2_block1_shortcut").__class__.__name__ == "ZeroPadShortcut"


def test_load_model_rejects_lambda_layer(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ValueError, match="Lambda") as info:
        keras_resnet.load_model(path)
    assert str(path) in str(info.value)
    assert "safe_mode=False" in str(info.value)


def test_load_model_names_unknown_class(tmp_path):
    @keras.saving.register_keras_serializable(package="test_only")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((4,))
    path = tmp_path / "custom.keras"
    keras.Model(inputs, Doubler()(inputs)).save(path)
    del keras.saving.get_custom_objects()["test_only>Doubler"]

    with pytest.raises(ValueError, match="not registered") as info:
        keras_resnet.load_model(path)
    assert "Doubler" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "name, content, expected",
    [("model.keras", b"not a zip archive", "not a Keras model file"), ("model.h5", b"", "expected a .keras file")],
)
def test_load_model_rejects_other_files(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=expected) as info:
        keras_resnet.load_model(path)
    assert str(path) in str(info.value)


def test_load_model_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        keras_resnet.load_model(tmp_path / "missing.keras")
    assert "missing.keras" in str(info.value)


def test_load_model_reads_saved_resnet(saved_model):
    folder, expected = saved_model
    model = keras_resnet.load_model(folder / "model.keras")
    np.testing.assert_array_equal(model.predict(np.load(folder / "x.npy"), verbose=0), expected)


def test_failed_write_keeps_previous_file(tmp_path):
    from keras_resnet import saving

    path = tmp_path / "metrics.json"
    path.write_text("previous")
    with pytest.raises(RuntimeError, match="disk full"):
        with saving.atomic_path(path) as temporary:
            temporary.write_text("half writt")
            raise RuntimeError("disk full")
    assert path.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_load_model_rejects_folder(tmp_path):
    folder = tmp_path / "model.keras"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder") as info:
        keras_resnet.load_model(folder)
    assert str(folder) in str(info.value)


LOAD_DEEP = """
import sys
import keras
import numpy as np
import keras_resnet

print(sys.getrecursionlimit())
model = keras_resnet.load_model(sys.argv[1], compile=False)
print(len(model.layers), float(keras.ops.convert_to_numpy(model(np.ones((1, 2), "float32")))[0, 0]))
"""


def test_load_model_deep_graph(tmp_path):
    from keras_resnet import saving

    # 2,000 layers in a chain: Keras's recursive graph walk needs more than
    # Python's default 1000 frames, as the CIFAR ResNet-1202 does.
    saving.allow_graph_depth(2000)
    inputs = keras.Input((2,))
    x = inputs
    for _ in range(2000):
        x = keras.layers.Identity()(x)
    keras.Model(inputs, x).save(tmp_path / "deep.keras")

    result = run_python(LOAD_DEEP, tmp_path / "deep.keras")
    assert result.returncode == 0, result.stderr[-2000:]
    default_limit, loaded = result.stdout.strip().splitlines()[-2:]
    assert int(default_limit) == 1000
    assert loaded == "2001 1.0"
