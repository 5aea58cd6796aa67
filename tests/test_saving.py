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


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_reload_on_every_backend(saved_model, backend):
    folder, expected = saved_model
    import os
    import subprocess
    import sys

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
