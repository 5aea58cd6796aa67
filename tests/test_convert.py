"""Weight conversion from torchvision state dicts and keras.applications models."""

import os
import pathlib

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import convert

REPO = pathlib.Path(__file__).resolve().parent.parent
REFERENCE = pathlib.Path(os.environ.get("KERAS_RESNET_TORCHVISION_REFERENCE", REPO / "build" / "torchvision-reference"))
TORCHVISION_MODELS = ("resnet18", "resnet50", "resnext50_32x4d")


def reference_files(name):
    """Return the state dict path and outputs that tests/reference/torchvision_reference.py wrote."""
    pth, npz = REFERENCE / f"{name}.pth", REFERENCE / f"{name}.npz"
    if not (pth.is_file() and npz.is_file()):
        message = (
            f"{pth} or {npz} is missing; run `make torchvision-reference` to write them with torchvision's own "
            "model code"
        )
        # CI must compare against torchvision, so a missing file is an error there.
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return pth, np.load(npz)


def call(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_torchvision_outputs_match(name):
    pytest.importorskip("torch", reason="reading .pth files needs PyTorch, the [torch] extra")
    pth, reference = reference_files(name)
    model = convert.from_torchvision(pth, input_shape=(64, 64, 3), classifier_activation=None)
    assert model.name == name
    # Logits that barely vary would make the comparison meaningless.
    assert reference["logits"].std() > 1e-2
    np.testing.assert_allclose(call(model, reference["images"]), reference["logits"], atol=1e-4, rtol=0)


def test_torchvision_dict_of_arrays():
    torch = pytest.importorskip("torch", reason="reading .pth files needs PyTorch, the [torch] extra")
    pth, reference = reference_files("resnet18")
    state = {key: value.numpy() for key, value in torch.load(pth, weights_only=True).items()}
    model = convert.from_torchvision(state, input_shape=(64, 64, 3), classifier_activation=None)
    np.testing.assert_allclose(call(model, reference["images"]), reference["logits"], atol=1e-4, rtol=0)


def torchvision_like_state(depth=18, num_classes=4):
    """Return a state dict with torchvision's names and shapes, from a model of this package."""
    model = keras_resnet.build(depth=depth, num_classes=num_classes, input_shape=(32, 32, 3))
    state = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        key = layer.name.replace("stem_conv1", "conv1").replace("stem_bn1", "bn1").replace("head_dense", "fc")
        if key.startswith("stage"):
            stage, block, part = key.split("_", 2)
            part = part.replace("shortcut_conv", "downsample.0").replace("shortcut_bn", "downsample.1")
            key = f"layer{stage[5:]}.{int(block[5:]) - 1}.{part}"
        weights = [keras.ops.convert_to_numpy(w) for w in layer.weights]
        if isinstance(layer, keras.layers.BatchNormalization):
            names = ("weight", "bias", "running_mean", "running_var")
        elif isinstance(layer, keras.layers.Dense):
            names, weights = ("weight", "bias"), [weights[0].T, weights[1]]
        else:
            names, weights = ("weight",), [weights[0].transpose(3, 2, 0, 1)]
        state.update({f"{key}.{name}": value for name, value in zip(names, weights)})
    return model, state


def test_torchvision_round_trip_of_own_weights():
    model, state = torchvision_like_state()
    converted = convert.from_torchvision(state, input_shape=(32, 32, 3))
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(call(converted, x), call(model, x))
    assert converted.output_shape == (None, 4)


def test_torchvision_rejects_unknown_key():
    _, state = torchvision_like_state()
    state["layer1.0.attention.weight"] = np.zeros(3)
    with pytest.raises(ValueError, match="'layer1.0.attention.weight'"):
        convert.from_torchvision(state)


def test_torchvision_rejects_wrong_shape():
    _, state = torchvision_like_state()
    state["layer2.0.conv1.weight"] = np.zeros((128, 32, 3, 3), "float32")
    with pytest.raises(ValueError) as info:
        convert.from_torchvision(state, input_shape=(32, 32, 3))
    assert "stage2_block1_conv1" in str(info.value)
    assert "(3, 3, 32, 128)" in str(info.value)


def test_torchvision_rejects_unsupported_layout():
    _, state = torchvision_like_state()
    state = {key: value for key, value in state.items() if not key.startswith("layer4.1.")}
    with pytest.raises(ValueError, match=r"\[2, 2, 2, 1\]"):
        convert.from_torchvision(state)


def test_torchvision_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        convert.from_torchvision(tmp_path / "missing.pth")


def test_torchvision_rejects_other_types():
    with pytest.raises(TypeError, match="list"):
        convert.from_torchvision([1, 2])


def randomize(model, rng):
    """Give BatchNorm statistics and convolution biases values a mix-up would show."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.set_weights(
                [rng.uniform(0.25, 0.75, shape), rng.normal(0, 0.1, shape), rng.normal(0, 0.1, shape), rng.uniform(0.5, 1.5, shape)]
            )
        elif isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])


def check_keras_applications(application):
    # The weight mapping does not depend on the backend, and JAX's first call
    # of two 50-layer networks costs the most, so these run under the others.
    if keras.backend.backend() == "jax":
        pytest.skip("backend-independent weight mapping; runs under KERAS_BACKEND=tensorflow and torch")
    rng = np.random.default_rng(0)
    # weights=None: random weights, because nothing can be downloaded here.
    source = application(weights=None, input_shape=(64, 64, 3), classes=10, classifier_activation=None)
    randomize(source, rng)
    model = convert.from_keras_applications(source)
    x = rng.normal(size=(2, 64, 64, 3)).astype("float32")
    expected = call(source, x)
    assert expected.std() > 1e-2
    np.testing.assert_allclose(call(model, x), expected, atol=1e-4, rtol=0)
    return model


def test_keras_resnet50_v1():
    model = check_keras_applications(keras.applications.ResNet50)
    assert model.get_layer("stage2_block1_conv1").strides == (2, 2)
    assert model.get_layer("stage2_block1_conv1").use_bias


def test_keras_resnet50_v2():
    model = check_keras_applications(keras.applications.ResNet50V2)
    assert model.get_layer("stage1_block3_conv2").strides == (2, 2)
    assert "post_bn" in [layer.name for layer in model.layers]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ResNet101", "ResNet152", "ResNet101V2", "ResNet152V2"])
def test_keras_deeper_resnets(name):
    check_keras_applications(getattr(keras.applications, name))


def only_under_torch():
    if keras.backend.backend() != "torch":
        pytest.skip("checks file handling and layer shapes, which are backend-independent; runs under KERAS_BACKEND=torch")


def test_keras_applications_without_top():
    only_under_torch()
    source = keras.applications.ResNet50V2(weights=None, include_top=False, input_shape=(64, 64, 3), pooling=None)
    model = convert.from_keras_applications(source)
    assert model.output_shape == source.output_shape


def test_keras_applications_rejects_other_models():
    inputs = keras.Input((32, 32, 3))
    other = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="conv1_conv")(inputs), name="tiny")
    with pytest.raises(ValueError, match="'tiny'"):
        convert.from_keras_applications(other)


def test_cli_converts_state_dict_once(tmp_path, capsys):
    only_under_torch()
    torch = pytest.importorskip("torch", reason="writing a .pth file needs PyTorch, the [torch] extra")
    from keras_resnet import cli

    model, state = torchvision_like_state()
    source, output = tmp_path / "resnet18.pth", tmp_path / "resnet18.keras"
    torch.save({key: torch.from_numpy(value) for key, value in state.items()}, source)

    assert cli.main(["convert", str(source), str(output), "--image-size", "32", "--logits"]) == 0
    converted = keras_resnet.load_model(output)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    # The source model ends in softmax and the converted one in logits.
    np.testing.assert_allclose(keras.ops.softmax(call(converted, x)), call(model, x), atol=1e-6)
    assert "resnet18" in capsys.readouterr().out

    written = output.read_bytes()
    assert cli.main(["convert", str(source), str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == written


def test_cli_rejects_unknown_suffix(tmp_path, capsys):
    from keras_resnet import cli

    source = tmp_path / "weights.bin"
    source.write_bytes(b"")
    assert cli.main(["convert", str(source), str(tmp_path / "out.keras")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("keras-resnet: error: ")
    assert "weights.bin" in error
    assert ".pth" in error


def test_cli_lists_models(capsys):
    from keras_resnet import cli

    assert cli.main(["models"]) == 0
    assert capsys.readouterr().out.split() == keras_resnet.available_models()
