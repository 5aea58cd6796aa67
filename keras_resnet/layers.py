"""The registered custom layers that the models use.

Every layer here is registered with Keras under the package name
"keras_resnet", so a saved `.keras` file loads with plain
`keras.saving.load_model` once `keras_resnet` has been imported, and without
`safe_mode=False` because no `Lambda` layer is involved.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_resnet")
class ZeroPadShortcut(keras.layers.Layer):
    """Identity shortcut that subsamples and pads new channels with zeros.

    This is option A of He et al. 2016, section 4.2: when a residual stage
    halves the spatial size and widens the channels, the shortcut keeps every
    `strides`-th pixel and appends zero channels, so it has no parameters.

    Args:
        filters: int, number of output channels; at least the input's.
        strides: int, spatial subsampling factor (1 or 2 in the models here).

    Input shape: `(batch, height, width, channels)` (channels_last).
    Output shape: `(batch, ceil(height / strides), ceil(width / strides), filters)`.
    """

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        if int(strides) < 1 or int(filters) < 1:
            raise ValueError(f"ZeroPadShortcut needs filters >= 1 and strides >= 1; received {filters!r}, {strides!r}.")
        self.filters = int(filters)
        self.strides = int(strides)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels > self.filters:
            raise ValueError(
                f"ZeroPadShortcut can only add channels: input has {channels}, "
                f"but `filters` is {self.filters}."
            )

    def call(self, inputs):
        outputs = inputs[:, :: self.strides, :: self.strides, :]
        extra = self.filters - ops.shape(inputs)[-1]
        if extra:
            outputs = ops.pad(outputs, [(0, 0), (0, 0), (0, 0), (0, extra)])
        return outputs

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape

        def reduce(size):
            return None if size is None else -(-size // self.strides)

        return (batch, reduce(height), reduce(width), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "strides": self.strides})
        return config


@keras.saving.register_keras_serializable(package="keras_resnet")
class ClassLabels(keras.layers.Layer):
    """Identity layer on the classifier output that records the class names.

    Keras saves a layer's config in the `.keras` file, so the names travel
    with the model to any backend, and export and prediction read them from
    there instead of needing a separate labels file.

    Args:
        class_names: sequence of str, one per classifier output, in output
            order.
    """

    def __init__(self, class_names, **kwargs):
        super().__init__(**kwargs)
        names = list(class_names)
        if len(names) < 2 or not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"`class_names` must be two or more non-empty strings; received {class_names!r}.")
        if len(set(names)) != len(names):
            raise ValueError(f"`class_names` must not repeat a name; received {names!r}.")
        self.class_names = names

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != len(self.class_names):
            raise ValueError(
                f"The classifier has {input_shape[-1]} outputs but {len(self.class_names)} class names were "
                f"given: {self.class_names!r}."
            )

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"class_names": list(self.class_names)})
        return config


@keras.saving.register_keras_serializable(package="keras_resnet")
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops a residual branch for whole samples in training.

    Huang et al., "Deep Networks with Stochastic Depth" (ECCV 2016). During
    training each sample's input is zeroed with probability `rate` and
    otherwise scaled by `1 / (1 - rate)`, so the expected output equals the
    input. At inference (`training=False`, as in `predict`) the layer is the
    identity. The same sample-wise mask as `keras.layers.Dropout` with a
    noise shape of `(batch, 1, 1, 1)`.

    Args:
        rate: float in [0, 1), probability of dropping the branch.
        seed: int or None, seed of the random masks. Defaults to None.

    Input shape: any, with the batch first. Output shape: the input's.
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"DropPath `rate` must be a number in [0, 1); received {rate!r}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        noise_shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        return keras.random.dropout(inputs, self.rate, noise_shape=noise_shape, seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
