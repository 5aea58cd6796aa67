"""Shared fixtures. The suite runs once per backend, chosen by KERAS_BACKEND."""

import math
import os
import pathlib
import subprocess
import sys

import keras
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def run_python(code, *args, cwd=None, timeout=600):
    """Run `code` in a fresh interpreter with this process's Keras backend."""
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def trainable_params(model):
    """Count the trainable parameters of `model`."""
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def rounds_to(count, printed_millions):
    """Check that `count` prints as `printed_millions` (such as "25.6") in millions."""
    decimals = len(printed_millions.split(".")[1])
    return f"{count / 1e6:.{decimals}f}" == printed_millions


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    yield
    keras.backend.clear_session()
