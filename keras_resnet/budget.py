"""Model cost measures and the budget a tuning search enforces.

Three measures bound a search, each taken from a built model before it
trains:

- trainable parameters, the figure torchvision and `keras-resnet train`
  report (BatchNorm's moving statistics and the input normalisation are
  not trainable, so they are left out);
- FLOPs, counted as multiply-adds of the convolution and dense layers, the
  convention of He et al. 2016 (Table 1) and of torchvision's "GFLOPS";
  BatchNorm, ReLU, pooling and additions are left out, as there;
- latency, the median milliseconds per image of inference at a given batch
  size on the machine at hand.
"""

import dataclasses
import math
import statistics
import time

import keras
import numpy as np

from keras_resnet import config

# Inference calls timed for the latency; the median of these is reported.
LATENCY_REPEATS = 10
# Untimed calls before timing: the first call traces or compiles the
# function (tf.function, jax.jit), which would dominate a median of few runs.
LATENCY_WARMUP = 2


@dataclasses.dataclass(frozen=True)
class Budget:
    """Upper bounds on a model's cost; None leaves a measure unbounded.

    Attributes:
        max_params: int or None, maximum trainable parameters.
        max_flops: int or None, maximum multiply-adds for one image.
        max_latency_ms: float or None, maximum median milliseconds per image
            of inference at `latency_batch_size` on this machine.
        latency_batch_size: int, images per inference call when the latency
            is measured. Defaults to 1.
    """

    max_params: int = None
    max_flops: int = None
    max_latency_ms: float = None
    latency_batch_size: int = 1

    def __post_init__(self):
        if self.max_params is not None:
            config.check_int("max_params", self.max_params, minimum=1)
        if self.max_flops is not None:
            config.check_int("max_flops", self.max_flops, minimum=1)
        if self.max_latency_ms is not None:
            config.check_positive_number("max_latency_ms", self.max_latency_ms)
        config.check_int("latency_batch_size", self.latency_batch_size, minimum=1)

    def violations(self, measures):
        """Return one sentence per bound that `measures` exceeds.

        Args:
            measures: dict from `measure()`.

        Returns:
            list of str, empty when the model fits the budget.
        """
        found = []
        if self.max_params is not None and measures["params"] > self.max_params:
            found.append(f"{measures['params']:,} trainable parameters exceed max_params={self.max_params:,}")
        if self.max_flops is not None and measures["flops"] > self.max_flops:
            found.append(f"{measures['flops']:,} FLOPs exceed max_flops={self.max_flops:,}")
        latency = measures.get("latency_ms")
        if self.max_latency_ms is not None and latency is not None and latency > self.max_latency_ms:
            found.append(
                f"{latency:.3f} ms per image at batch size {self.latency_batch_size} exceeds "
                f"max_latency_ms={self.max_latency_ms}"
            )
        return found


def measure(model, budget=None):
    """Measure a built model: parameters, FLOPs and, when bounded, latency.

    Args:
        model: a built `keras.Model` with a fixed input size.
        budget: `Budget` or None. The latency is measured only when
            `budget.max_latency_ms` is set, because it takes a few inference
            calls.

    Returns:
        dict with "params" (int), "flops" (int) and "latency_ms" (float or
        None).
    """
    latency = None
    if budget is not None and budget.max_latency_ms is not None:
        latency = measure_latency_ms(model, budget.latency_batch_size)
    return {"params": count_params(model), "flops": count_flops(model), "latency_ms": latency}


def count_params(model):
    """Return the number of trainable parameters of `model`."""
    return int(sum(math.prod(weight.shape) for weight in model.trainable_weights))


def count_flops(model):
    """Return the multiply-adds of one image through `model`'s conv and dense layers.

    A convolution costs `output height x output width x output channels x
    kernel height x kernel width x input channels / groups`, a dense layer
    `inputs x outputs` for each position it is applied to. Layers nested in
    sub-models are counted too.

    Args:
        model: a built `keras.Model` whose input height and width are fixed.

    Returns:
        int.

    Raises:
        ValueError: if a convolution's output size is unknown, as in a model
            built with `input_shape=(None, None, 3)`.
    """
    total = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            output_shape = layer.output.shape
            if any(size is None for size in output_shape[1:]):
                raise ValueError(
                    f"Cannot count the FLOPs of layer {layer.name!r}: its output shape {tuple(output_shape)} has an "
                    "unknown size; build the model with a fixed input_shape such as (32, 32, 3)."
                )
            kernel_height, kernel_width, kernel_inputs, _ = layer.kernel.shape
            total += math.prod(output_shape[1:]) * kernel_height * kernel_width * kernel_inputs
        elif isinstance(layer, keras.layers.Dense):
            positions = math.prod(layer.output.shape[1:-1])
            total += positions * math.prod(layer.kernel.shape)
    return int(total)


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def measure_latency_ms(model, batch_size=1, repeats=LATENCY_REPEATS):
    """Return the median milliseconds per image of inference on this machine.

    The model runs `predict_on_batch` on random pixels in [0, 255], the
    same compiled inference function that `model.predict` uses, first
    `LATENCY_WARMUP` times untimed and then `repeats` times timed.

    Args:
        model: a built `keras.Model` whose input size is fixed.
        batch_size: int >= 1, images per call. Defaults to 1.
        repeats: int >= 1, timed calls. Defaults to `LATENCY_REPEATS`.

    Returns:
        float, the median seconds per call divided by `batch_size`, in
        milliseconds.
    """
    batch_size = config.check_int("batch_size", batch_size, minimum=1)
    repeats = config.check_int("repeats", repeats, minimum=1)
    shape = (batch_size, *model.input_shape[1:])
    if any(size is None for size in shape):
        raise ValueError(f"Cannot time a model with input shape {model.input_shape}; build it with a fixed input_shape.")
    images = np.random.default_rng(0).uniform(0, 255, size=shape).astype("float32")

    for _ in range(LATENCY_WARMUP):
        model.predict_on_batch(images)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(images)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds) / batch_size * 1000
