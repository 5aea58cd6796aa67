"""Measure training throughput of CIFAR ResNet-20 for each `jit_compile` setting.

Settings are measured in turns (round-robin, several rounds) in one process,
so that noise from other work on the machine hits them alike. The result
backs the `jit_compile="auto"` default of `keras_resnet.training.TrainConfig`.

Usage:
    KERAS_BACKEND=tensorflow python experiments/compile_settings.py [--rounds 3] [--steps 20]
"""

import argparse
import json

import keras
import numpy as np

import keras_resnet
from keras_resnet.benchmark import fit_images_per_second

SETTINGS = {"tensorflow": (False, "auto", True), "jax": ("auto",), "torch": ("auto", False)}


def make_model(jit_compile):
    model = keras_resnet.build(depth=20)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy", jit_compile=jit_compile)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.steps * args.batch_size, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, len(x))
    models = {setting: make_model(setting) for setting in SETTINGS[backend]}

    rates = {setting: [] for setting in models}
    for _ in range(args.rounds):
        for setting, model in models.items():
            rates[setting].append(fit_images_per_second(model, x, y, args.batch_size))

    medians = {str(setting): float(np.median(values)) for setting, values in rates.items()}
    best = max(medians.values())
    print(f"backend {backend}, CIFAR ResNet-20, batch {args.batch_size}, median of {args.rounds} rounds:")
    for setting, rate in medians.items():
        print(f"  jit_compile={setting:<6} {rate:7.1f} images/s  ({rate / best:.2f}x the fastest)")
    print(json.dumps({"backend": backend, "images_per_second": medians}))


if __name__ == "__main__":
    main()
