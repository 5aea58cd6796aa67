"""Safe loading of `.keras` files and atomic writes of run files.

Every file this package writes goes to a temporary name in the same folder
first. It is then renamed into place with `os.replace`, which is atomic on
POSIX file systems, so a killed process leaves either the old file or the
new one and never a truncated mix.
"""

import contextlib
import json
import os
import pathlib
import re
import sys
import zipfile

import keras

import keras_resnet.layers  # noqa: F401  (registers the custom layers before loading)


def load_model(path, compile=True):
    """Load a `.keras` file with Keras's safe mode on.

    Safe mode rejects `Lambda` layers and any other serialized Python code,
    so loading a file cannot run code that the file brings along.

    Args:
        path: str or path of a `.keras` file.
        compile: bool, whether to restore the optimizer and loss. Defaults to
            True.

    Returns:
        The `keras.Model`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if `path` is not a `.keras` file, contains code that safe
            mode rejects, or names a class that is not registered.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"'{path}' is a folder; pass the path of a .keras file.")
    if not path.is_file():
        raise FileNotFoundError(f"Model file '{path}' does not exist; pass the path of a .keras file.")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ValueError(
            f"'{path}' is not a Keras model file; expected a .keras file written by model.save() "
            "(a zip archive with config.json and the weights)."
        )

    allow_graph_depth(_layer_count(path))
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except ValueError as error:
        if "safe_mode" in str(error) or "lambda" in str(error).lower():
            raise ValueError(
                f"Rejected '{path}': it contains a Lambda layer or other serialized Python code, which "
                "safe mode does not run. Load it with keras.saving.load_model(path, safe_mode=False) "
                "only if you trust where the file came from."
            ) from error
        raise ValueError(f"Could not load '{path}' as a Keras model: {_first_line(error)}") from error
    except TypeError as error:
        unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", str(error))
        name = repr(unknown.group(1)) if unknown else _first_line(error)
        raise ValueError(
            f"Could not load '{path}': it uses {name}, which is not registered in this process. "
            "Import the package that defines it before loading, and load only files you trust."
        ) from error
    except (KeyError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"'{path}' is not a readable Keras model file: {_first_line(error)}") from error


def allow_graph_depth(num_layers):
    """Raise Python's recursion limit so that Keras can walk a graph of `num_layers` layers.

    Keras builds and loads a functional model by walking its graph
    recursively, a frame or more per layer of the longest path. Python's
    default limit of 1000 frames stops it with RecursionError before the
    CIFAR ResNet-1202 (about 4,200 layers) and PreAct ResNet-1001. The limit
    is only raised, never lowered.
    """
    needed = 1000 + 3 * num_layers
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


def _layer_count(path):
    # The functional model's config lists every layer. A file without one
    # counts as 0 layers, and keras.saving.load_model then reports the problem.
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        return len(config["config"]["layers"])
    except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile):
        return 0


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` on success.

    The temporary name keeps the file's suffix, because writers such as
    `model.save` and `savefig` pick the format from it. On an exception the
    temporary file is removed and `path` keeps its previous content.
    """
    path = pathlib.Path(path)
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def atomic_write_text(path, text):
    """Write `text` to `path` through a temporary file and a rename."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
