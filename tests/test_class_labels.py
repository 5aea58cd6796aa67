"""Class names stored in the model by `build(class_names=...)`."""

import keras
import numpy as np
import pytest

import keras_resnet

NAMES = ["cat", "dog", "emu"]


def _small(**kwargs):
    return keras_resnet.build(depth=8, family="cifar", width=0.25, num_classes=3, **kwargs)


def test_names_survive_save_and_load(tmp_path):
    model = _small(class_names=NAMES)
    assert model.layers[-1].name == "head_labels"
    assert keras_resnet.class_names(model) == NAMES

    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert keras_resnet.class_names(reloaded) == NAMES
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_labels_layer_adds_no_weights():
    assert _small(class_names=NAMES).count_params() == _small().count_params()
    assert keras_resnet.class_names(_small()) is None


@pytest.mark.parametrize(
    "names, expected",
    [
        (["cat", "dog"], "3 outputs but 2 class names"),
        (["cat", "dog", "cat"], "must not repeat"),
        (["cat", "", "emu"], "non-empty strings"),
        (["cat", 2, "emu"], "non-empty strings"),
    ],
)
def test_bad_class_names(names, expected):
    with pytest.raises(ValueError, match=expected) as error:
        _small(class_names=names)
    assert repr(names) in str(error.value)


def test_class_names_need_the_classifier():
    with pytest.raises(ValueError, match="include_top=True"):
        _small(class_names=NAMES, include_top=False)
