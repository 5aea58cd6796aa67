"""Shared fixtures. The suite runs once per backend, chosen by KERAS_BACKEND."""

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


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    yield
    keras.backend.clear_session()
