import json
import os
import pathlib
import re

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import blocks

SNAPSHOTS = pathlib.Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("KERAS_RESNET_UPDATE_SNAPSHOTS") == "1"


def layer_table(model):
    return [[layer.name, type(layer).__name__, list(layer.output.shape[1:])] for layer in model.layers]


@pytest.mark.parametrize("variant", ["resnet18", "resnet50", "resnet20", "resnet50d", "resnetv2_50", "seresnet50"])
def test_layer_names_match_snapshot(variant):
    """Layer names and order are public API: weight files and converters use them."""
    path = SNAPSHOTS / f"{variant}_layers.json"
    table = layer_table(keras_resnet.build(variant))
    if UPDATE:
        path.write_text(json.dumps(table, indent=0) + "\n")
    assert path.exists(), f"{path} is missing; run the tests with KERAS_RESNET_UPDATE_SNAPSHOTS=1 to write it."
    assert table == json.loads(path.read_text())


def test_hand_composed_network_trains():
    inputs = keras.Input((32, 32, 3))
    x = keras_resnet.cifar_stem(inputs, 8)
    x = keras_resnet.basic_block(x, 8, name="a")
    x = keras_resnet.bottleneck_block(x, 4, strides=2, name="b")
    x = keras_resnet.stage(x, "basic", 24, blocks=2, strides=2, shortcut="zero_pad", name="c")
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)

    assert model.get_layer("b_conv3").output.shape[1:] == (16, 16, 16)
    assert model.get_layer("c_block1_out").output.shape[1:] == (8, 8, 24)
    assert model.get_layer("b_shortcut_conv").kernel.shape == (1, 1, 8, 16)

    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    history = model.fit(
        rng.normal(size=(8, 32, 32, 3)).astype("float32"), rng.integers(0, 3, 8), epochs=1, batch_size=4, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])


def test_identity_shortcut_when_shape_is_kept():
    inputs = keras.Input((8, 8, 16))
    outputs = keras_resnet.basic_block(inputs, 16, name="blk")
    model = keras.Model(inputs, outputs)
    names = [layer.name for layer in model.layers]
    assert "blk_shortcut_conv" not in names
    assert model.get_layer("blk_add").input[0] is inputs


@pytest.mark.parametrize("builder, out_channels", [(keras_resnet.basic_block, 16), (keras_resnet.bottleneck_block, 64)])
def test_projection_shortcut_when_shape_changes(builder, out_channels):
    inputs = keras.Input((9, 9, 8))
    model = keras.Model(inputs, builder(inputs, 16, strides=2, name="blk"))
    assert model.output_shape == (None, 5, 5, out_channels)
    assert model.get_layer("blk_shortcut_conv").kernel.shape == (1, 1, 8, out_channels)
    assert model.get_layer("blk_shortcut_bn") is not None


def test_zero_pad_shortcut_values():
    layer = keras_resnet.ZeroPadShortcut(6, strides=2)
    x = np.arange(2 * 5 * 5 * 4, dtype="float32").reshape(2, 5, 5, 4)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (2, 3, 3, 6)
    np.testing.assert_array_equal(out[..., :4], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(out[..., 4:], 0.0)


def test_zero_pad_shortcut_rejects_fewer_channels():
    with pytest.raises(ValueError, match="input has 8"):
        keras_resnet.ZeroPadShortcut(4)(keras.Input((4, 4, 8)))


def test_strided_conv_pads_symmetrically():
    # PyTorch pads 1 pixel on each side of a 3x3 stride-2 convolution; with
    # an all-ones kernel, output (0, 0) then sums the 2x2 top-left corner.
    inputs = keras.Input((4, 4, 1))
    outputs = blocks.conv_bn(inputs, 1, 3, strides=2, activation=False, name="t")
    model = keras.Model(inputs, outputs)
    model.get_layer("t_conv").kernel.assign(np.ones((3, 3, 1, 1), "float32"))
    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    conv = keras.Model(inputs, model.get_layer("t_conv").output)
    out = keras.ops.convert_to_numpy(conv(x))[0, :, :, 0]
    assert out.shape == (2, 2)
    assert out[0, 0] == x[0, 0:2, 0:2, 0].sum()
    assert out[1, 1] == x[0, 1:4, 1:4, 0].sum()


def test_stems_reduce_as_documented():
    inputs = keras.Input((64, 64, 3))
    assert keras_resnet.imagenet_stem(inputs).shape[1:] == (16, 16, 64)
    assert keras_resnet.cifar_stem(inputs).shape[1:] == (64, 64, 16)


def test_stage_rejects_unknown_block():
    with pytest.raises(ValueError, match="'dense'"):
        keras_resnet.stage(keras.Input((8, 8, 4)), "dense", 4, 1)
    with pytest.raises(ValueError, match="0"):
        keras_resnet.stage(keras.Input((8, 8, 4)), "basic", 4, 0)


def test_block_rejects_tuple_strides():
    with pytest.raises(TypeError, match=re.escape("(2, 2)")):
        keras_resnet.basic_block(keras.Input((8, 8, 4)), 4, strides=(2, 2))


def test_zero_pad_shortcut_rejects_zero_strides():
    with pytest.raises(ValueError, match="strides >= 1"):
        keras_resnet.ZeroPadShortcut(16, 0)
