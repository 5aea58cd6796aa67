"""keras_resnet: residual networks for Keras 3 on TensorFlow, JAX and PyTorch.

    import keras_resnet
    model = keras_resnet.build(depth=50)

Importing the package imports Keras, with the backend that `KERAS_BACKEND`
names, and registers the package's custom layers, so `keras.saving.load_model`
reads saved models without `custom_objects`. The data and training modules,
which import TensorFlow, load on first use, as do export and prediction.
"""

import importlib

from keras_resnet.blocks import basic_block
from keras_resnet.blocks import batch_norm
from keras_resnet.blocks import bottleneck_block
from keras_resnet.blocks import conv
from keras_resnet.blocks import conv_bn
from keras_resnet.blocks import squeeze_excitation
from keras_resnet.blocks import stage
from keras_resnet.layers import ClassLabels
from keras_resnet.layers import DropPath
from keras_resnet.layers import ZeroPadShortcut
from keras_resnet.models import available_models
from keras_resnet.models import build
from keras_resnet.models import class_names
from keras_resnet.saving import load_model
from keras_resnet.stems import cifar_stem
from keras_resnet.stems import imagenet_stem

__version__ = "0.1.0"
__all__ = [
    "available_models",
    "basic_block",
    "batch_norm",
    "bottleneck_block",
    "build",
    "ClassLabels",
    "class_names",
    "cifar_stem",
    "conv",
    "conv_bn",
    "DropPath",
    "imagenet_stem",
    "load_model",
    "squeeze_excitation",
    "stage",
    "ZeroPadShortcut",
    "load_datasets",
    "Datasets",
    "train",
    "TrainConfig",
    "export_saved_model",
    "export_onnx",
    "predict_images",
]

_LAZY = {
    "load_datasets": "keras_resnet.data",
    "Datasets": "keras_resnet.data",
    "train": "keras_resnet.training",
    "TrainConfig": "keras_resnet.training",
    "export_saved_model": "keras_resnet.export",
    "export_onnx": "keras_resnet.export",
    "predict_images": "keras_resnet.predict",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_resnet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
