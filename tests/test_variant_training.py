"""One training step, saving and reloading for the options of the registry.

The fast tests train a few small networks that together use every option of
the registry entries. The slow tests train every entry at a quarter of its
width, save it, and reload it in a fresh process of the next backend.
"""

import hashlib
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet.registry import VARIANTS

# Small networks that together use every option of the registry entries,
# each at the smallest depth of its family, named after the entries whose
# options they cover.
OPTION_SETS = {
    # The resnetv2 entries.
    "resnetv2": {"depth": 18, "preact": True, "width": 0.25},
    # preresnet110.
    "preresnet_basic": {"depth": 8, "family": "cifar", "preact": True},
    # preresnet164 and preresnet1001, with the grouped inner convolution of
    # the resnext and wide_resnet entries.
    "preresnet_bottleneck_grouped": {
        "depth": 11, "family": "cifar", "block": "bottleneck", "preact": True, "groups": 4, "width_per_group": 32,
    },
    # resnet50c, the resnet*d entries and the seresnet entries.
    "resnet_d_se": {"depth": 18, "stem": "deep", "avg_down": True, "se_ratio": 4, "width": 0.25},
    # The wrn entries. With 4 images, the chance that a block drops all of
    # them, so that its weights get no gradient, is below 1e-4.
    "wrn": {"depth": 10, "family": "wrn", "widen_factor": 2, "drop_path_rate": 0.1},
}
SMALL = {"input_shape": (32, 32, 3), "num_classes": 3}
# The files that a fresh process of the next backend reloads: between them
# every layer type of the option sets and a dict of outputs.
RELOADED = ("preresnet_bottleneck_grouped", "resnet_d_se", "wrn", "pyramid")
# Each backend's run reloads its files under the next backend.
NEXT_BACKEND = {"tensorflow": "torch", "torch": "jax", "jax": "tensorflow"}
# Outputs reloaded under another backend agree to 1e-5, absolute or relative:
# the unnormalised pyramid features reach about 13, where the backends'
# float32 convolutions differed by up to 1.7e-5 (a relative 3.6e-6).
RELOAD_TOLERANCE = 1e-5
# The untrained deeper networks of the registry compute logits up to about
# 1e6 in inference mode, where the backends' float32 rounding compounds
# over the layers: preresnet164's differed by a relative 1.5e-4 between
# backends while every weight was byte-identical.
UNTRAINED_RELOAD_RTOL = 1e-3

RELOAD = """
import hashlib
import pathlib
import sys

import keras
import numpy as np

import keras_resnet

folder = pathlib.Path(sys.argv[1])
training = sys.argv[2] == "training"
x = np.load(folder / "x.npy")
for path in sorted(folder.glob("*.keras")):
    model = keras_resnet.load_model(path, compile=False)
    digest = hashlib.sha256(b"".join(keras.ops.convert_to_numpy(w).tobytes() for w in model.weights))
    path.with_suffix(".reloaded.sha256").write_text(digest.hexdigest())
    # A direct call runs eagerly, which for one batch is faster than
    # compiling the prediction function of predict().
    out = model(x, training=training)
    if isinstance(out, dict):
        out = np.concatenate([keras.ops.convert_to_numpy(out[key]).reshape(len(x), -1) for key in sorted(out)], axis=1)
    np.save(path.with_suffix(".reloaded.npy"), keras.ops.convert_to_numpy(out))
print(keras.backend.backend())
"""


def images_and_labels(count=4):
    rng = np.random.default_rng(0)
    return rng.normal(size=(count, 32, 32, 3)).astype("float32"), rng.integers(0, 3, count)


def train_one_step(model, jit_compile=None, loss="sparse_categorical_crossentropy"):
    """Fit one batch with SGD; return the weights before and the loss.

    `jit_compile=None` compiles with XLA where Keras's "auto" does, except
    under TensorFlow, where compiling takes longer than the one step saves.
    """
    x, y = images_and_labels()
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    if jit_compile is None:
        jit_compile = False if keras.backend.backend() == "tensorflow" else "auto"
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, jit_compile=jit_compile)
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    return before, history.history["loss"][0]


def assert_every_weight_moved(model, before):
    # With plain SGD a weight changes exactly when its gradient is non-zero.
    unchanged = [
        w.path for w, old in zip(model.trainable_weights, before) if np.array_equal(keras.ops.convert_to_numpy(w), old)
    ]
    assert not unchanged, f"no gradient reached {unchanged}"


def weights_digest(model):
    """Return the SHA-256 of every weight's bytes, in the model's order, as the reload script computes it."""
    return hashlib.sha256(b"".join(keras.ops.convert_to_numpy(w).tobytes() for w in model.weights)).hexdigest()


def predict(model, x, training=False):
    """Return the model's eager outputs as one array; dict outputs are flattened and joined."""
    out = model(x, training=training)
    if isinstance(out, dict):
        return np.concatenate([keras.ops.convert_to_numpy(out[key]).reshape(len(x), -1) for key in sorted(out)], axis=1)
    return keras.ops.convert_to_numpy(out)


def build_option_set(name):
    return keras_resnet.build(**OPTION_SETS[name], **SMALL)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train each option set one step and save it; return the folder and outputs."""
    folder = tmp_path_factory.mktemp("variants")
    x, _ = images_and_labels()
    np.save(folder / "x.npy", x)
    results = {}
    for name in OPTION_SETS:
        model = build_option_set(name)
        before, loss = train_one_step(model)
        if name in RELOADED:
            model.save(folder / f"{name}.keras")
        results[name] = (model, before, loss, predict(model, x))
        keras.backend.clear_session()

    pyramid = keras_resnet.build(depth=18, width=0.25, feature_pyramid=True, **SMALL)
    pyramid.save(folder / "pyramid.keras")
    results["pyramid"] = (pyramid, None, None, predict(pyramid, x))
    return folder, results


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_one_step_trains_every_weight(trained, name):
    _, results = trained
    model, before, loss, _ = results[name]
    assert np.isfinite(loss)
    assert_every_weight_moved(model, before)


def reload_under_next_backend(folder, training=False, timeout=600):
    """Reload every .keras file of `folder` in a fresh process of the next backend, writing *.reloaded.npy."""
    backend = NEXT_BACKEND[keras.backend.backend()]
    result = subprocess.run(
        [sys.executable, "-c", RELOAD, folder, "training" if training else "inference"],
        env=dict(os.environ, KERAS_BACKEND=backend),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(backend)


def test_reload_under_next_backend(trained):
    folder, results = trained
    reload_under_next_backend(folder)
    for name in RELOADED:
        np.testing.assert_allclose(
            np.load(folder / f"{name}.reloaded.npy"), results[name][3], rtol=RELOAD_TOLERANCE, atol=RELOAD_TOLERANCE, err_msg=name
        )


@pytest.mark.parametrize("name", RELOADED)
def test_reload_in_process_is_identical(trained, name):
    folder, results = trained
    model = keras_resnet.load_model(folder / f"{name}.keras")
    x, _ = images_and_labels()
    np.testing.assert_array_equal(predict(model, x), results[name][3])


def test_zero_init_and_drop_path_train():
    model = keras_resnet.build(depth=8, zero_init_last_gamma=True, drop_path_rate=0.5, num_classes=3)
    _, first = train_one_step(model)
    x, y = images_and_labels()
    second = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0).history["loss"][0]
    assert np.isfinite(first)
    assert np.isfinite(second)
    # The zero scale blocks the gradient of its branch only until the scale
    # itself has moved, which the first step does.
    gamma = keras.ops.convert_to_numpy(model.get_layer("stage1_block1_bn2").gamma)
    assert np.any(gamma != 0)


EVERY_VARIANT = sorted(VARIANTS)


@pytest.fixture(scope="module")
def every_variant_folder(tmp_path_factory):
    """A folder that the slow tests fill with every variant, trained one step, and its outputs."""
    folder = tmp_path_factory.mktemp("every_variant")
    np.save(folder / "x.npy", images_and_labels()[0])
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("variant", EVERY_VARIANT)
def test_every_variant_trains(variant, every_variant_folder):
    # Logits: ResNet-1202's untrained logits lie tens apart, where a
    # softmax's clipped probabilities would pass no gradient at all.
    model = keras_resnet.build(variant, width=0.25, classifier_activation=None, **SMALL)
    assert model.name == f"{variant}_w0.25"
    assert len({layer.name for layer in model.layers}) == len(model.layers)
    # Without XLA: under JAX, compiling the training step of preresnet1001
    # had taken 19 GB of memory and 6 minutes when it was stopped.
    logits_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    before, loss = train_one_step(model, jit_compile=False, loss=logits_loss)
    assert np.isfinite(loss)
    assert_every_weight_moved(model, before)
    model.save(every_variant_folder / f"{variant}.keras")
    (every_variant_folder / f"{variant}.sha256").write_text(weights_digest(model))
    x = np.load(every_variant_folder / "x.npy")
    np.save(every_variant_folder / f"{variant}.npy", predict(model, x))
    # In training mode BatchNorm normalises with the batch's statistics.
    assert np.all(np.isfinite(predict(model, x, training=True)))


@pytest.mark.slow
def test_every_variant_reloads_under_next_backend(every_variant_folder):
    # Runs after test_every_variant_trains (pytest keeps the file's order).
    saved_names = sorted(path.stem for path in every_variant_folder.glob("*.keras"))
    assert saved_names == EVERY_VARIANT
    reload_under_next_backend(every_variant_folder, timeout=1800)
    for variant in EVERY_VARIANT:
        saved_digest = (every_variant_folder / f"{variant}.sha256").read_text()
        assert (every_variant_folder / f"{variant}.reloaded.sha256").read_text() == saved_digest, variant
    # Inference mode uses the BatchNorm moving statistics, still near their
    # initial values after one step, and the outputs of the deeper networks
    # (resnet101 at width 0.25 after one step, resnet1202 untrained)
    # overflow to NaN there. Those are compared by their weights alone.
    compared = []
    for variant in EVERY_VARIANT:
        saved = np.load(every_variant_folder / f"{variant}.npy")
        if not np.all(np.isfinite(saved)):
            continue
        compared.append(variant)
        np.testing.assert_allclose(
            np.load(every_variant_folder / f"{variant}.reloaded.npy"),
            saved,
            rtol=UNTRAINED_RELOAD_RTOL,
            atol=RELOAD_TOLERANCE,
            err_msg=variant,
        )
    # The shallow networks stay finite, so outputs are compared for them.
    assert {"resnet18", "resnet20", "wrn16_8"} <= set(compared), compared
