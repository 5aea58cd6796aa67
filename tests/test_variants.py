"""The registry of named variants and the block options behind them."""

import math
import re

import keras
import numpy as np
import pytest

import keras_resnet
from conftest import rounds_to
from conftest import trainable_params
from keras_resnet import config
from keras_resnet.registry import VARIANTS

# torchvision's exact counts at 1000 classes: the "num_params" entries of the
# weight metadata in torchvision 0.29.1's torchvision/models/resnet.py, such
# as ResNeXt50_32X4D_Weights.IMAGENET1K_V1.
TORCHVISION_PARAMS = {
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
}
# timm's model index, millions of parameters as printed:
# docs/models/.templates/models/resnet-d.md and se-resnet.md of
# huggingface/pytorch-image-models ("Parameters: 25580000" for resnet50d).
TIMM_PARAMS = {
    "resnet18d": "11.71",
    "resnet34d": "21.82",
    "resnet50d": "25.58",
    "resnet101d": "44.57",
    "resnet152d": "60.21",
    "resnet200d": "64.69",
    "seresnet50": "28.09",
}
# Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016), the table that
# compares WRNs with earlier ResNets on CIFAR: WRN-40-4 8.9M, WRN-16-8 11.0M,
# WRN-28-10 36.5M, pre-act-ResNet 110 and 164 1.7M, pre-act-ResNet 1001 10.2M
# (millions as printed). The figures were read from two copies of that table
# found with the search tool: a transcription of the paper's table and the
# results table of the gahaalt/cifar-vs-tensorflow2 README; the DenseNet paper
# (Huang et al. 2017, Table 2) prints the same 10.2M for ResNet-1001.
WRN_PAPER_PARAMS = {"wrn40_4": "8.9", "wrn16_8": "11.0", "wrn28_10": "36.5"}
# The pre-activation rows of the same table, which He et al. 2016b
# ("Identity Mappings in Deep Residual Networks") trained.
PREACT_PAPER_PARAMS = {"preresnet110": "1.7", "preresnet164": "1.7"}

PUBLISHED = {**TORCHVISION_PARAMS, **TIMM_PARAMS, **WRN_PAPER_PARAMS, **PREACT_PAPER_PARAMS}


# JAX compiles each weight initialiser, which makes its full-size builds the
# slowest, so the counts are checked under the other two.
COUNTING_BACKENDS = ("tensorflow", "torch")


def structure_only():
    """Skip outside the torch run: the test checks the layer graph, which no backend changes."""
    if keras.backend.backend() != "torch":
        pytest.skip("checks the layer graph only, which is backend-independent; runs under KERAS_BACKEND=torch")


@pytest.mark.parametrize("index, variant", enumerate(sorted(PUBLISHED)))
def test_params_match_published_figure(index, variant):
    # Parameter counts do not depend on the backend, so each full-size build
    # runs in one backend's run of the suite, taking turns to share the time.
    backend = COUNTING_BACKENDS[index % len(COUNTING_BACKENDS)]
    if keras.backend.backend() != backend:
        pytest.skip(f"backend-independent; runs under KERAS_BACKEND={backend}")
    count = trainable_params(keras_resnet.build(variant, input_shape=(32, 32, 3)))
    published = PUBLISHED[variant]
    if isinstance(published, int):
        assert count == published
    else:
        assert rounds_to(count, published), f"{count:,} does not round to {published}M"


@pytest.mark.slow
def test_preresnet1001_params_match_paper():
    # The Wide ResNet paper's table (see WRN_PAPER_PARAMS) and the DenseNet
    # paper give pre-activation ResNet-1001 10.2M parameters. That figure
    # leaves out the BatchNorm scales and offsets (10,327,706 with them).
    model = keras_resnet.build("preresnet1001")
    batch_norm = sum(
        math.prod(w.shape)
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for w in layer.trainable_weights
    )
    assert trainable_params(model) == 10_327_706
    assert rounds_to(trainable_params(model) - batch_norm, "10.2")


def test_registry_names_and_families():
    names = keras_resnet.available_models()
    assert len(names) == len(set(names)) == len(VARIANTS)
    for expected in ("resnext50_32x4d", "wide_resnet50_2", "resnet50d", "seresnet50", "resnet20", "wrn28_10"):
        assert expected in names
    for entry in VARIANTS.values():
        assert entry["family"] in config.FAMILIES


def test_keyword_form_equals_variant():
    structure_only()
    by_name = keras_resnet.build("resnext50_32x4d", width=0.25, input_shape=(32, 32, 3))
    by_keyword = keras_resnet.build(depth=50, groups=32, width_per_group=4, width=0.25, input_shape=(32, 32, 3))
    assert [l.name for l in by_name.layers] == [l.name for l in by_keyword.layers]
    assert trainable_params(by_name) == trainable_params(by_keyword)
    assert by_keyword.name == "resnet50_w0.25"


def test_variant_rejects_conflicting_option():
    with pytest.raises(ValueError) as info:
        keras_resnet.build("resnext50_32x4d", groups=8)
    assert "groups=8" in str(info.value)
    assert "groups=32" in str(info.value)


def test_variant_accepts_extra_option():
    structure_only()
    model = keras_resnet.build("resnet18d", se_ratio=16, width=0.25, input_shape=(32, 32, 3))
    assert "stage1_block1_se_scale" in [layer.name for layer in model.layers]


def test_resnext_grouped_convolution():
    structure_only()
    model = keras_resnet.build("resnext50_32x4d", width=0.5, input_shape=(32, 32, 3))
    conv2 = model.get_layer("stage1_block1_conv2")
    assert conv2.groups == 32
    # Stage 1 has 32 filters at half width: int(32 * 4 / 64) * 32 = 64, torchvision's formula.
    assert conv2.kernel.shape == (3, 3, 2, 64)


def test_wide_bottleneck_doubles_inner_width():
    structure_only()
    model = keras_resnet.build("wide_resnet50_2", width=0.25, input_shape=(32, 32, 3))
    # Stage 4 has 128 filters at a quarter width: inner width 2 * 128, output 4 * 128.
    assert model.get_layer("stage4_block1_conv2").kernel.shape == (3, 3, 256, 256)
    assert model.get_layer("stage4_block3_conv3").kernel.shape == (1, 1, 256, 512)


def test_wrn_layout():
    structure_only()
    model = keras_resnet.build("wrn16_8", include_top=False)
    assert model.get_layer("stem_conv1").kernel.shape == (3, 3, 3, 16)
    assert model.get_layer("stage1_block1_shortcut_conv").kernel.shape == (1, 1, 16, 128)
    assert model.get_layer("stage3_block2_conv2").kernel.shape == (3, 3, 512, 512)
    assert model.output_shape == (None, 8, 8, 512)
    assert "post_relu" in [layer.name for layer in model.layers]


def test_deep_stem_and_average_pool_shortcut():
    structure_only()
    model = keras_resnet.build("resnet18d", input_shape=(64, 64, 3))
    assert model.get_layer("stem_conv1").kernel.shape == (3, 3, 3, 32)
    assert model.get_layer("stem_conv1").strides == (2, 2)
    assert model.get_layer("stem_conv3").kernel.shape == (3, 3, 32, 64)
    assert model.get_layer("stem_pool").output.shape[1:] == (16, 16, 64)
    assert model.get_layer("stage2_block1_shortcut_pool").output.shape[1:] == (8, 8, 64)
    assert model.get_layer("stage2_block1_shortcut_conv").strides == (1, 1)
    # Stage 1 does not downsample, so its shortcut has no pool.
    assert "stage1_block1_shortcut_pool" not in [layer.name for layer in model.layers]


def test_average_pool_shortcut_values():
    # timm's AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False) averages
    # only real pixels at an odd border; Keras's padding="same" must too.
    inputs = keras.Input((3, 3, 1))
    block = keras.Model(inputs, keras_resnet.basic_block(inputs, 2, strides=2, avg_down=True, name="b"))
    pool = keras.Model(inputs, block.get_layer("b_shortcut_pool").output)
    x = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    out = keras.ops.convert_to_numpy(pool(x))[0, :, :, 0]
    np.testing.assert_allclose(out, [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8]])


def test_squeeze_excitation_ratio():
    structure_only()
    model = keras_resnet.build(depth=50, se_ratio=8, width=0.5, input_shape=(32, 32, 3))
    # Stage 1 outputs 4 * 32 = 128 channels; 128 // 8 = 16.
    assert model.get_layer("stage1_block1_se_conv1").kernel.shape == (1, 1, 128, 16)
    assert model.get_layer("stage1_block1_se_conv2").kernel.shape == (1, 1, 16, 128)
    assert model.get_layer("stage1_block1_add").input[1] is model.get_layer("stage1_block1_se_scale").output


def test_squeeze_excitation_gates_channels():
    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, keras_resnet.squeeze_excitation(inputs, ratio=4, name="t"))
    model.get_layer("t_se_conv2").bias.assign(np.full(8, -50.0, "float32"))
    model.get_layer("t_se_conv2").kernel.assign(np.zeros((1, 1, 2, 8), "float32"))
    out = keras.ops.convert_to_numpy(model(np.ones((1, 4, 4, 8), "float32")))
    # A gate of sigmoid(-50) closes every channel.
    assert np.abs(out).max() < 1e-20


def test_preact_block_layout():
    structure_only()
    model = keras_resnet.build("resnetv2_18", width=0.25, input_shape=(64, 64, 3))
    names = [layer.name for layer in model.layers]
    assert "stem_bn1" not in names
    assert "stage1_block1_preact_bn" in names
    assert "stage1_block1_out" not in names
    assert "stage1_block1_shortcut_bn" not in names
    assert names[-4:] == ["post_bn", "post_relu", "head_pool", "head_dense"]
    # The projection shortcut reads the pre-activated input.
    shortcut = model.get_layer("stage2_block1_shortcut_conv")
    assert shortcut.input is model.get_layer("stage2_block1_preact_relu").output


def test_stride_in_first_1x1():
    structure_only()
    model = keras_resnet.build(depth=50, stride_in_1x1=True, width=0.25, input_shape=(64, 64, 3))
    assert model.get_layer("stage2_block1_conv1").strides == (2, 2)
    assert model.get_layer("stage2_block1_conv2").strides == (1, 1)


def test_stride_in_last_block():
    structure_only()
    model = keras_resnet.build(depth=50, preact=True, stride_block="last", width=0.25, input_shape=(64, 64, 3))
    assert model.get_layer("stage1_block3_conv2").strides == (2, 2)
    assert model.get_layer("stage1_block3_shortcut").__class__.__name__ == "ZeroPadShortcut"
    assert model.get_layer("stage4_block3_conv2").strides == (1, 1)
    assert model.get_layer("post_relu").output.shape[1:] == (2, 2, 512)


def test_cifar_bottleneck_depths():
    structure_only()
    model = keras_resnet.build(depth=29, block="bottleneck", width=0.5)
    assert model.name == "resnet29_w0.5"
    # 9n + 2 = 29 gives n = 3 bottleneck blocks per stage.
    assert "stage3_block4_out" not in [layer.name for layer in model.layers]
    assert model.get_layer("stage3_block3_out").output.shape[1:] == (8, 8, 128)


def test_zero_init_last_gamma():
    structure_only()
    model = keras_resnet.build(depth=18, zero_init_last_gamma=True, width=0.25, input_shape=(32, 32, 3))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("stage1_block1_bn2").gamma), 0.0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("stage1_block1_bn1").gamma), 1.0)
    default = keras_resnet.build(depth=18, width=0.25, input_shape=(32, 32, 3))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(default.get_layer("stage1_block1_bn2").gamma), 1.0)


def test_zero_init_makes_blocks_identity():
    inputs = keras.Input((8, 8, 4))
    block = keras.Model(inputs, keras_resnet.basic_block(inputs, 4, zero_init_last_gamma=True, name="b"))
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
    # BatchNorm's offset starts at zero too, so the block is ReLU(x).
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block(x)), np.maximum(x, 0), atol=1e-6)


def test_drop_path_rates_rise_linearly():
    structure_only()
    model = keras_resnet.build(depth=20, drop_path_rate=0.3)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras_resnet.DropPath)]
    # Nine blocks: block l of 9 has rate 0.3 * l / 9.
    np.testing.assert_allclose(rates, [0.3 * l / 9 for l in range(1, 10)])
    assert model.get_layer("stage3_block3_drop_path").rate == pytest.approx(0.3)


def test_drop_path_identity_at_inference():
    layer = keras_resnet.DropPath(0.5, seed=1)
    x = np.ones((64, 2, 2, 3), "float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)


def test_drop_path_drops_whole_samples():
    layer = keras_resnet.DropPath(0.5, seed=1)
    out = keras.ops.convert_to_numpy(layer(np.ones((400, 2, 2, 3), "float32"), training=True))
    per_sample = out.reshape(400, -1)
    # Each sample is all zeros or all 1 / (1 - 0.5) = 2.
    assert set(np.unique(per_sample)) == {0.0, 2.0}
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))
    assert 0.4 < (per_sample[:, 0] == 0).mean() < 0.6


def test_drop_path_serializes():
    layer = keras_resnet.DropPath(0.2, seed=3, name="dp")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, keras_resnet.DropPath)
    assert restored.rate == 0.2
    assert restored.seed == 3


@pytest.mark.parametrize("rate", [1.0, -0.1, "0.5"])
def test_drop_path_rejects_rate(rate):
    with pytest.raises(ValueError, match=re.escape(repr(rate))):
        keras_resnet.DropPath(rate)


@pytest.mark.parametrize(
    "family, size, expected",
    [
        ("imagenet", 64, {"C2": (16, 16, 16), "C3": (8, 8, 32), "C4": (4, 4, 64), "C5": (2, 2, 128)}),
        ("cifar", 32, {"C0": (32, 32, 4), "C1": (16, 16, 8), "C2": (8, 8, 16)}),
    ],
)
def test_feature_pyramid_outputs(family, size, expected):
    depth = 18 if family == "imagenet" else 20
    model = keras_resnet.build(depth=depth, family=family, width=0.25, input_shape=(size, size, 3), feature_pyramid=True)
    assert sorted(model.output) == sorted(expected)
    for key, shape in expected.items():
        assert tuple(model.output[key].shape[1:]) == shape
    out = model.predict(np.zeros((1, size, size, 3), "float32"), verbose=0)
    assert {key: value.shape[1:] for key, value in out.items()} == expected


def test_feature_pyramid_preact_ends_after_final_norm():
    structure_only()
    model = keras_resnet.build("resnetv2_18", width=0.25, input_shape=(64, 64, 3), feature_pyramid=True)
    assert model.output["C5"] is model.get_layer("post_relu").output
    assert model.output["C4"] is model.get_layer("stage3_block2_add").output


@pytest.mark.parametrize(
    "kwargs, error, received, accepted",
    [
        ({"depth": 18, "groups": 32}, ValueError, "groups=32", "bottleneck"),
        ({"depth": 50, "stem": "tall"}, ValueError, "'tall'", "'standard', 'deep'"),
        ({"depth": 20, "stem": "deep"}, ValueError, "'cifar'", "'imagenet'"),
        ({"depth": 20, "avg_down": True}, ValueError, "'zero_pad'", "shortcut='projection'"),
        ({"depth": 20, "widen_factor": 4}, ValueError, "widen_factor=4", "'wrn'"),
        ({"depth": 28, "family": "wrn", "preact": False}, ValueError, "preact=False", "pre-activation"),
        ({"depth": 30, "family": "wrn"}, ValueError, "30", "6n + 4"),
        ({"depth": 164, "block": "dense"}, ValueError, "'dense'", "'basic', 'bottleneck'"),
        ({"depth": 1001}, ValueError, "1001", "9n + 2"),
        ({"depth": 20, "drop_path_rate": 1.0}, ValueError, "1.0", "[0, 1)"),
        ({"depth": 20, "se_ratio": 0}, ValueError, "0", "> 0"),
        ({"depth": 18, "preact": True, "zero_init_last_gamma": True}, ValueError, "preact=True", "post-activation"),
        ({"depth": 18, "feature_pyramid": True, "pooling": "avg"}, ValueError, "'avg'", "None"),
        ({"depth": 50, "feature_pyramid": True, "stride_block": "last"}, ValueError, "'last'", "'first'"),
        ({"depth": 18, "preact": "yes"}, TypeError, "'yes'", "True or False"),
        ({"depth": 18, "groupz": 2}, TypeError, "groupz", "groups"),
    ],
)
def test_invalid_option_message(kwargs, error, received, accepted):
    with pytest.raises(error) as info:
        keras_resnet.build(**kwargs)
    assert received in str(info.value)
    assert accepted in str(info.value)
