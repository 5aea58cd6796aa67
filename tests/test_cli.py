import json
import os
import signal
import subprocess
import sys
import time

import keras
import pytest


def run_cli(*args, cwd=None, backend=None):
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    if backend is not None:
        env.pop("KERAS_BACKEND")
        args = (*args, "--backend", backend)
    return subprocess.run(
        [sys.executable, "-m", "keras_resnet.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    # A user's file whose name looks like a leftover temporary file.
    run_dir.mkdir()
    (run_dir / ".tmp-draft.txt").write_text("mine")
    result = run_cli("train", "--depth", "8", "--epochs", "2", "--batch-size", "64", "--output", str(run_dir))
    return run_dir, result


def test_train_on_sample_end_to_end(finished_run):
    run_dir, result = finished_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "validation accuracy" in result.stdout

    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("val_accuracy", "val_loss", "epochs", "backend", "depth", "width", "params", "train_images", "train_seconds"):
        assert key in metrics, key
    assert metrics["backend"] == keras.backend.backend()
    assert metrics["epochs"] == 2
    assert metrics["depth"] == 8
    assert metrics["params"] == 75_290
    assert metrics["train_images"] == 4000
    assert metrics["train_seconds"] > 0
    # Chance is 0.1 on ten balanced classes; two epochs of ResNet-8 reach
    # about 0.3 on the sample.
    assert metrics["val_accuracy"] > 0.15

    history = (run_dir / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch")
    assert len(history) == 3
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (run_dir / "backup").exists()
    assert (run_dir / ".tmp-draft.txt").read_text() == "mine"
    assert json.loads((run_dir / "run_config.json").read_text())["depth"] == 8


def test_saved_run_model_loads(finished_run):
    import keras_resnet  # noqa: F401  (registers the custom layers, as a user would)

    run_dir, _ = finished_run
    model = keras.saving.load_model(run_dir / "model.keras")
    assert model.output_shape == (None, 10)
    assert model.get_layer("input_normalize") is not None
    assert keras_resnet.class_names(model) == CIFAR10_CLASSES


# The class order of the shipped sample (CIFAR-10's label order).
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _sample_jpegs(folder, count):
    # Original CIFAR-10 JPEG files from the shipped validation records.
    import tensorflow as tf

    from keras_resnet import data

    features = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
    records = tf.data.TFRecordDataset(str(data.SAMPLE_DIR / "cifar10_validation.tfrecord"))
    paths = []
    for index, record in enumerate(records.shuffle(1000, seed=3).take(count)):
        example = tf.io.parse_single_example(record, features)
        label = CIFAR10_CLASSES[int(example["label"])]
        paths.append(folder / f"{index}_{label}.jpg")
        paths[-1].write_bytes(example["image"].numpy())
    return paths


# The export and predict commands are thin layers over export.py and
# predict.py, whose tests run under every backend.
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="backend-independent; runs under tensorflow")
def test_export_then_predict_from_the_command_line(finished_run, tmp_path):
    run_dir, _ = finished_run
    model_path = run_dir / "model.keras"
    images = _sample_jpegs(tmp_path, 3)

    exported = run_cli("export", str(model_path), "--name", "cifar10", "--base-dir", str(tmp_path / "models"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert exported.stdout.strip().splitlines()[-1] == str(tmp_path / "models" / "cifar10" / "1")

    again = run_cli("export", str(model_path), "--name", "cifar10", "--base-dir", str(tmp_path / "models"), "--version", "1")
    assert again.returncode == 2
    last_line = again.stderr.strip().splitlines()[-1]
    assert last_line.startswith("keras-resnet: error: Version folder")
    assert "cifar10/1' already exists" in last_line
    assert "--version" in last_line
    assert "--overwrite" in last_line
    assert "Traceback" not in again.stderr

    for source in (model_path, tmp_path / "models" / "cifar10"):
        result = run_cli("predict", str(source), *map(str, images), "--json", "--top", "3")
        assert result.returncode == 0, result.stderr[-3000:]
        predictions = json.loads(result.stdout)
        assert [p["image"] for p in predictions] == [str(path) for path in images]
        for prediction in predictions:
            assert len(prediction["top"]) == 3
            assert {entry["class"] for entry in prediction["top"]} <= set(CIFAR10_CLASSES)
            probabilities = [entry["probability"] for entry in prediction["top"]]
            assert probabilities == sorted(probabilities, reverse=True)
            assert 0 < sum(probabilities) <= 1 + 1e-6
        if source == model_path:
            from_keras = predictions
    assert [p["top"][0]["class"] for p in predictions] == [p["top"][0]["class"] for p in from_keras]


def test_rerun_refuses_to_overwrite(finished_run):
    run_dir, _ = finished_run
    before = (run_dir / "model.keras").read_bytes()
    result = run_cli("train", "--depth", "8", "--epochs", "2", "--output", str(run_dir))
    assert result.returncode == 2
    assert "already contains a finished run" in result.stderr
    assert "Traceback" not in result.stderr
    assert (run_dir / "model.keras").read_bytes() == before


@pytest.mark.parametrize(
    "args, received",
    [
        (["--depth", "51"], "51"),
        (["--width", "0"], "0"),
        (["--epochs", "0"], "0"),
        (["--data", "/no/such/folder"], "/no/such/folder"),
        (["--validation-split", "1.5"], "1.5"),
        (["--data", "no_such_dataset_xyz"], "no_such_dataset_xyz"),
        (["--data", "tfds:"], "''"),
        (["--batch-size", "0"], "--batch-size"),
        (["--seed", "-1"], "--seed"),
        (["--weight-decay", "nan"], "nan"),
        (["--model", "resnet51"], "'resnet51'"),
        (["--model", "resnet50", "--depth", "20"], "depth=20"),
    ],
)
def test_bad_arguments_exit_cleanly(tmp_path, capsys, args, received):
    # In-process: the checks do not depend on the process, and one launch
    # per case would cost seconds. test_bad_argument_in_a_real_process runs
    # the installed command.
    from keras_resnet import cli

    status = cli.main(["train", *args, "--output", str(tmp_path / "run")])
    stderr = capsys.readouterr().err
    assert status == 2
    assert received in stderr
    assert stderr.strip().splitlines()[-1].startswith("keras-resnet: error:"), stderr
    assert not (tmp_path / "run").exists()


class _Captured(Exception):
    pass


@pytest.mark.parametrize("value, expected", [("false", False), ("true", True), ("auto", "auto")])
def test_jit_compile_option_reaches_config(monkeypatch, tmp_path, value, expected):
    from keras_resnet import cli
    from keras_resnet import training

    def capture(cfg, **kwargs):
        raise _Captured(cfg)

    monkeypatch.setattr(training, "train", capture)
    with pytest.raises(_Captured) as info:
        cli.main(["train", "--jit-compile", value, "--output", str(tmp_path / "run")])
    assert info.value.args[0].jit_compile == expected


def test_jit_compile_option_names_choices(capsys):
    from keras_resnet import cli

    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--jit-compile", "maybe"])
    stderr = capsys.readouterr().err
    assert info.value.code == 2
    assert "'maybe'" in stderr
    assert "'auto', 'true', 'false'" in stderr


@pytest.mark.parametrize("option", ["--rounds", "--steps"])
def test_benchmark_rejects_zero_length(capsys, option):
    from keras_resnet import cli

    status = cli.main(["benchmark", option, "0"])
    stderr = capsys.readouterr().err
    assert status == 2
    assert f"{option} must be an integer >= 1; received 0" in stderr


def test_bad_argument_in_a_real_process(tmp_path):
    result = run_cli("train", "--depth", "51", "--output", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "51" in result.stderr
    assert "Traceback" not in result.stderr
    # TensorFlow may log its start-up notices before; the error is last.
    assert result.stderr.strip().splitlines()[-1].startswith("keras-resnet: error:"), result.stderr


def test_backend_flag_restarts_with_that_backend(tmp_path):
    other = "jax" if keras.backend.backend() != "jax" else "torch"
    result = run_cli("train", "--depth", "51", "--output", str(tmp_path / "run"), backend=other)
    assert result.returncode == 2
    assert f"with the {other} backend" in result.stderr
    assert "51" in result.stderr


def history_rows(run_dir):
    path = run_dir / "history.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


# BackupAndRestore and the run folder logic are the same on every backend,
# and this test trains in two processes, so it runs in one backend's suite.
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="backend-independent; runs under tensorflow")
def test_killed_run_resumes_from_last_epoch(tmp_path):
    run_dir = tmp_path / "run"
    args = ("train", "--depth", "8", "--epochs", "4", "--batch-size", "32", "--output", str(run_dir))
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_resnet.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 600
    while history_rows(run_dir) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    # Half a second into the second epoch of about three seconds.
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()

    finished = history_rows(run_dir)
    assert process.returncode == -signal.SIGKILL
    assert 1 <= finished < 4
    assert (run_dir / "backup").is_dir()
    assert not (run_dir / "metrics.json").exists()

    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 4
    # The backup is written after the epoch's history row, so a kill between
    # the two repeats that one epoch.
    assert metrics["epochs_this_process"] in (4 - finished, 5 - finished)
    epochs = [line.split(",")[0] for line in (run_dir / "history.csv").read_text().splitlines()[1:]]
    assert sorted(set(epochs)) == ["0", "1", "2", "3"]
    assert not list(run_dir.glob(".tmp-*"))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data decoding only; runs under tensorflow")
def test_bad_image_folder_stops_before_training(tmp_path):
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(tmp_path / "data" / name / f"{i}.png")
    (tmp_path / "data" / "dog" / "broken.jpg").write_bytes(b"")

    args = ("train", "--depth", "8", "--epochs", "1", "--data", str(tmp_path / "data"), "--batch-size", "2")
    result = run_cli(*args, "--output", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "broken.jpg" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "history.csv").exists()

    result = run_cli(*args, "--output", str(tmp_path / "run2"), "--skip-bad-images", "--validation-split", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "broken.jpg" in result.stderr


def test_channel_count_is_checked_by_parser(tmp_path):
    result = run_cli("train", "--channels", "4", "--output", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "invalid choice: 4" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_keras_backend_is_named(tmp_path):
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    result = subprocess.run(
        [sys.executable, "-m", "keras_resnet.cli", "train", "--output", str(tmp_path / "run")],
        env=dict(env, KERAS_BACKEND="numpy"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2
    assert "'numpy'" in result.stderr
    assert "tensorflow, jax, torch" in result.stderr
    assert not (tmp_path / "run").exists()
