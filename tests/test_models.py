import math
import re

import keras
import numpy as np
import pytest

import keras_resnet
from conftest import rounds_to
from conftest import trainable_params
from keras_resnet import config



# torchvision's resnet18 ... resnet152 at 1000 classes: the "num_params"
# entries of the weight metadata in torchvision/models/resnet.py
# (ResNet18_Weights.IMAGENET1K_V1 and so on).
TORCHVISION_PARAMS = {
    18: 11_689_512,
    34: 21_797_672,
    50: 25_557_032,
    101: 44_549_160,
    152: 60_192_808,
}

# He et al. 2016, Table 6 (CIFAR-10, option A shortcuts): millions of
# parameters as printed, and the exact counts of that network at 10 classes.
# The printed figures are rounded, so a count matches when it rounds to the
# printed digits; 1,727,962 rounds to 1.7 but is 1.6 % above it.
CIFAR_PAPER_PARAMS = {20: "0.27", 32: "0.46", 44: "0.66", 56: "0.85", 110: "1.7", 1202: "19.4"}
CIFAR_EXACT_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("depth", sorted(TORCHVISION_PARAMS))
def test_imagenet_params_match_torchvision(depth):
    model = keras_resnet.build(depth=depth)
    assert trainable_params(model) == TORCHVISION_PARAMS[depth]


@pytest.mark.parametrize("depth", sorted(CIFAR_EXACT_PARAMS))
def test_cifar_params_match_paper(depth):
    count = trainable_params(keras_resnet.build(depth=depth))
    assert count == CIFAR_EXACT_PARAMS[depth]
    assert rounds_to(count, CIFAR_PAPER_PARAMS[depth])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="backend-independent; runs under tensorflow")
def test_cifar_1202_params_match_paper():
    count = trainable_params(keras_resnet.build(depth=1202))
    assert rounds_to(count, CIFAR_PAPER_PARAMS[1202])
    assert abs(count - 19.4e6) / 19.4e6 < 0.01


def test_resnet200_stage_layout():
    # He et al. 2016b ("Identity Mappings"): 3, 24, 36 and 3 bottleneck blocks.
    model = keras_resnet.build(depth=200, input_shape=(64, 64, 3), num_classes=10)
    names = [layer.name for layer in model.layers]
    for stage, blocks in enumerate((3, 24, 36, 3), start=1):
        assert f"stage{stage}_block{blocks}_out" in names
        assert f"stage{stage}_block{blocks + 1}_out" not in names


def test_depth_50_defaults_to_imagenet():
    model = keras_resnet.build(depth=50)
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 1000)
    assert model.name == "resnet50"


def test_depth_50_cifar_family():
    model = keras_resnet.build(depth=50, family="cifar")
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 10)
    assert model.name == "cifar_resnet50"
    assert "stage3_block8_out" in [layer.name for layer in model.layers]


def test_variant_name_equals_keyword_form():
    by_name = keras_resnet.build("resnet20")
    by_depth = keras_resnet.build(depth=20)
    assert [l.name for l in by_name.layers] == [l.name for l in by_depth.layers]
    assert "resnet20" in keras_resnet.available_models()
    assert "resnet50" in keras_resnet.available_models()


@pytest.mark.parametrize(
    "family, size, features",
    [("imagenet", 224, 7), ("imagenet", 33, 2), ("imagenet", 32, 1), ("cifar", 32, 8), ("cifar", 37, 10), ("cifar", 4, 1)],
)
def test_feature_map_size(family, size, features):
    depth = 18 if family == "imagenet" else 20
    model = keras_resnet.build(depth=depth, family=family, input_shape=(size, size + 13, 3), include_top=False)
    # Every stride-2 step keeps ceil(size / 2) pixels.
    expected_width = size + 13
    for _ in range(int(math.log2(config.IMAGENET_TOTAL_STRIDE if family == "imagenet" else 4))):
        expected_width = -(-expected_width // 2)
    channels = 512 if family == "imagenet" else 64
    assert model.output_shape == (None, features, expected_width, channels)


@pytest.mark.parametrize("pooling, shape", [("avg", (None, 2048)), ("max", (None, 2048)), (None, (None, 2, 2, 2048))])
def test_pooling_without_top(pooling, shape):
    model = keras_resnet.build(depth=50, input_shape=(64, 64, 3), include_top=False, pooling=pooling)
    assert model.output_shape == shape


def test_size_agnostic_model_predicts_two_sizes():
    model = keras_resnet.build(depth=20, input_shape=(None, None, 3))
    for size in (32, 48):
        out = model.predict(np.zeros((2, size, size, 3), "float32"), verbose=0)
        assert out.shape == (2, 10)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_classifier_activation_none_gives_logits():
    model = keras_resnet.build(depth=20, classifier_activation=None)
    out = model.predict(np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32"), verbose=0)
    assert not np.allclose(out.sum(axis=1), 1.0)


def test_grayscale_input_and_class_count():
    model = keras_resnet.build(depth=18, input_shape=(64, 64, 1), num_classes=7)
    assert model.output_shape == (None, 7)
    assert model.get_layer("stem_conv1").kernel.shape == (7, 7, 1, 64)


def test_width_multiplier_scales_every_stage():
    model = keras_resnet.build(depth=20, width=2)
    assert model.get_layer("stem_conv1").kernel.shape[-1] == 32
    assert model.get_layer("stage3_block3_conv2").kernel.shape[-1] == 128
    assert model.name == "resnet20_w2"


def test_imagenet_width_multiplier():
    model = keras_resnet.build(depth=50, width=0.5, input_shape=(64, 64, 3))
    assert model.get_layer("stem_conv1").kernel.shape[-1] == 32
    assert model.get_layer("stage4_block3_conv3").kernel.shape[-1] == 1024


def test_input_normalization_layer():
    mean, std = (10.0, 20.0, 30.0), (2.0, 4.0, 8.0)
    model = keras_resnet.build(depth=20, input_normalization=(mean, std), include_top=False)
    normalize = model.get_layer("input_normalize")
    x = np.full((1, 32, 32, 3), 50.0, "float32")
    out = keras.ops.convert_to_numpy(normalize(x))
    np.testing.assert_allclose(out[0, 0, 0], [(50 - 10) / 2, (50 - 20) / 4, (50 - 30) / 8], rtol=1e-6)


def test_convolutions_have_no_bias_and_no_lambda():
    model = keras_resnet.build(depth=50)
    for layer in model.layers:
        assert not isinstance(layer, keras.layers.Lambda), layer.name
        if isinstance(layer, keras.layers.Conv2D):
            assert not layer.use_bias, layer.name


def test_bottleneck_stride_on_3x3():
    model = keras_resnet.build(depth=50)
    assert model.get_layer("stage2_block1_conv1").strides == (1, 1)
    assert model.get_layer("stage2_block1_conv2").strides == (2, 2)
    assert model.get_layer("stage2_block1_shortcut_conv").strides == (2, 2)


LAYER_NAME = re.compile(r"^(image|input_normalize|head_(pool|dense)|stem_\w+|stage\d+_block\d+_[a-z_]+\d*)$")


@pytest.mark.parametrize("depth", [18, 50, 20])
def test_every_layer_has_a_scheme_name(depth):
    model = keras_resnet.build(depth=depth)
    for layer in model.layers:
        assert LAYER_NAME.match(layer.name), layer.name
    assert len({layer.name for layer in model.layers}) == len(model.layers)


@pytest.mark.parametrize(
    "kwargs, received, accepted",
    [
        ({"depth": 51}, "51", "18, 34, 50, 101, 152, 200"),
        ({"depth": 20, "family": "imagenet"}, "20", "18, 34, 50"),
        ({"depth": 18, "family": "cifar"}, "18", "6n + 2"),
        ({"depth": 50, "family": "tiny"}, "'tiny'", "'imagenet', 'cifar'"),
        ({"depth": 20, "width": 0}, "0", "> 0"),
        ({"depth": 20, "width": -1.5}, "-1.5", "> 0"),
        ({"depth": 20, "num_classes": 1}, "1", ">= 2"),
        ({"depth": 20, "pooling": "mean"}, "'mean'", "'avg', 'max'"),
        ({"depth": 20, "shortcut": "conv"}, "'conv'", "'projection', 'zero_pad'"),
        ({"depth": 50, "input_shape": (31, 64, 3)}, "(31, 64, 3)", "at least 32"),
        ({"depth": 20, "input_shape": (3, 3, 3)}, "(3, 3, 3)", "at least 4"),
        ({"depth": 20, "input_shape": (32, 32)}, "(32, 32)", "(height, width, channels)"),
        ({"depth": 20, "input_shape": (32, 32, 0)}, "0", ">= 1"),
        ({"depth": 20, "input_normalization": ((1, 2), (1, 1))}, "[1.0, 2.0]", "3 finite means"),
        ({}, "neither", "resnet50"),
        ({"variant": "resnet51"}, "'resnet51'", "resnet50"),
        ({"variant": "resnet50", "depth": 18}, "depth=18", "depth=50"),
    ],
)
def test_invalid_argument_message(kwargs, received, accepted):
    with pytest.raises(ValueError) as info:
        keras_resnet.build(**kwargs)
    assert received in str(info.value)
    assert accepted in str(info.value)


@pytest.mark.parametrize(
    "kwargs, received",
    [({"depth": "50"}, "'50'"), ({"depth": 50.0}, "50.0"), ({"depth": 20, "width": "2"}, "'2'"), ({"depth": 20, "include_top": "yes"}, "'yes'")],
)
def test_wrong_type_message(kwargs, received):
    with pytest.raises(TypeError, match=re.escape(received)):
        keras_resnet.build(**kwargs)


def test_variant_must_be_a_string():
    with pytest.raises(TypeError, match=re.escape("['resnet50']")):
        keras_resnet.build(variant=["resnet50"])


def test_channels_first_format_is_rejected():
    keras.config.set_image_data_format("channels_first")
    try:
        with pytest.raises(ValueError, match="'channels_first'"):
            keras_resnet.build(depth=20)
    finally:
        keras.config.set_image_data_format("channels_last")


def test_numpy_scalars_are_accepted():
    model = keras_resnet.build(depth=np.int64(20), width=np.float32(0.5), include_top=np.True_)
    assert model.output_shape == (None, 10)


def test_nan_normalization_is_rejected():
    with pytest.raises(ValueError, match="nan"):
        keras_resnet.build(depth=20, input_normalization=((float("nan"), 0, 0), (1, 1, 1)))
