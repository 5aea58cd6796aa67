"""Export for TF Serving and ONNX, checked outside Keras.

The SavedModel checks run in a fresh interpreter that imports only
TensorFlow, so Keras cannot vouch for its own export. Under the JAX and
PyTorch backends the export itself runs in a TensorFlow child process, so
these tests cover models saved under each backend.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet
from keras_resnet import data
from keras_resnet import export
from keras_resnet import predict

CLASS_NAMES = ["cat", "dog", "emu"]
SIZE = 32

# Runs in a fresh interpreter that imports only TensorFlow and NumPy, and
# cannot import keras_resnet: loads the export and writes what every
# signature returns to an .npz file. (TensorFlow 2.21 imports Keras itself
# on `import tensorflow`; nothing here calls it.)
SERVING_CHECK = r"""
import json, sys
sys.modules["keras_resnet"] = None  # any import of the package now fails
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

folder, images_file, output = sys.argv[1:4]
encoded = [open(path, "rb").read() for path in sys.argv[4:]]
proto = saved_model_pb2.SavedModel()
with open(folder + "/saved_model.pb", "rb") as f:
    proto.ParseFromString(f.read())
tags = [list(graph.meta_info_def.tags) for graph in proto.meta_graphs]

loaded = tf.saved_model.load(folder, tags=["serve"])
signatures = {}
for name, function in loaded.signatures.items():
    inputs = function.structured_input_signature[1]
    signatures[name] = {
        "inputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in inputs.items()},
        "outputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in function.structured_outputs.items()},
    }

arrays = dict(np.load(images_file))
results = {}
for size in (1, len(encoded)):
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(encoded[:size]))
    results[f"bytes{size}_probabilities"] = out["probabilities"].numpy()
    results[f"bytes{size}_classes"] = out["classes"].numpy()
    results[f"bytes{size}_class_names"] = out["class_names"].numpy().astype(str)
pixels = arrays["pixels"]
for size in (1, len(pixels)):
    out = loaded.signatures["predict_pixels"](images=tf.constant(pixels[:size], tf.float32))
    results[f"float{size}_probabilities"] = out["probabilities"].numpy()
    out = loaded.signatures["predict_pixels_uint8"](images=tf.constant(pixels[:size].astype(np.uint8)))
    results[f"uint8{size}_probabilities"] = out["probabilities"].numpy()
out = loaded.signatures["predict_pixels"](images=tf.constant(arrays["large"], tf.float32))
results["large_probabilities"] = out["probabilities"].numpy()
np.savez(output, **results)
print(json.dumps({"tags": tags, "signatures": signatures}))
"""


def _images(seed=0):
    # Encoded files of sizes other than the training size, as clients send.
    rng = np.random.default_rng(seed)
    smooth = lambda h, w: (rng.random((h // 4, w // 4, 3)) * 255).repeat(4, 0).repeat(4, 1)  # noqa: E731
    arrays = [smooth(40, 48), smooth(32, 32), smooth(64, 36)]
    encoded = [
        tf.io.encode_jpeg(arrays[0].astype(np.uint8)).numpy(),
        tf.io.encode_png(arrays[1].astype(np.uint8)).numpy(),
        tf.io.encode_jpeg(arrays[2].astype(np.uint8), quality=90).numpy(),
    ]
    return encoded


def _preprocess(encoded):
    # What training does to a file: the pipeline's own decoder and resizer.
    images = [data.resize_image(data.decode_image(tf.constant(b)), SIZE, SIZE) for b in encoded]
    return np.stack([image.numpy() for image in images]).astype("float32")


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    keras.utils.set_random_seed(1)
    model = keras_resnet.build(
        depth=8,
        family="cifar",
        width=0.5,
        num_classes=len(CLASS_NAMES),
        input_shape=(SIZE, SIZE, 3),
        input_normalization=([125.0, 122.0, 113.0], [63.0, 62.0, 66.0]),
        class_names=CLASS_NAMES,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(2).uniform(0, 255, (16, SIZE, SIZE, 3)).astype("float32")
    y = np.arange(16) % len(CLASS_NAMES)
    # A few steps move the BatchNorm statistics away from their initial
    # values, so the check covers inference-mode normalisation.
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("trained") / "model.keras"
    model.save(path)
    return path, model


@pytest.fixture(scope="module")
def exported(trained_model, tmp_path_factory):
    path, _ = trained_model
    base = tmp_path_factory.mktemp("serving")
    folder = export.export_saved_model(path, "cifar", base_dir=base)
    return folder


def test_export_layout(exported):
    assert exported.name == "1"
    assert exported.parent.name == "cifar"
    assert (exported / "saved_model.pb").is_file()
    assert (exported / "variables").is_dir()
    assert [p.name for p in exported.parent.iterdir()] == ["1"], "no staging folder may be left behind"
    metadata = json.loads((exported / "assets.extra" / export.METADATA_FILE).read_text())
    assert metadata["class_names"] == CLASS_NAMES
    assert (metadata["height"], metadata["width"], metadata["channels"]) == (SIZE, SIZE, 3)


def test_saved_model_serves_without_keras(trained_model, exported, tmp_path):
    _, model = trained_model
    encoded = _images()
    pixels = _preprocess(encoded)
    # A batch at twice the training size, resized inside the graph.
    large = np.stack([np.kron(image, np.ones((2, 2, 1))) for image in pixels]).astype("float32")
    np.savez(tmp_path / "inputs.npz", pixels=pixels, large=large)
    files = []
    for index, image in enumerate(encoded):
        files.append(str(tmp_path / f"image{index}"))
        (tmp_path / f"image{index}").write_bytes(image)

    result = subprocess.run(
        [sys.executable, "-c", SERVING_CHECK, str(exported), str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")]
        + files,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["tags"] == [["serve"]]

    signatures = report["signatures"]
    assert set(signatures) == {"serving_default", "predict_pixels", "predict_pixels_uint8"}
    assert signatures["serving_default"]["inputs"] == {"image_bytes": ["string", [None]]}
    assert signatures["predict_pixels"]["inputs"] == {"images": ["float32", [None, None, None, 3]]}
    assert signatures["predict_pixels_uint8"]["inputs"] == {"images": ["uint8", [None, None, None, 3]]}
    for signature in signatures.values():
        assert signature["outputs"] == {
            "probabilities": ["float32", [None, len(CLASS_NAMES)]],
            "classes": ["int64", [None]],
            "class_names": ["string", [None]],
        }

    outputs = np.load(tmp_path / "out.npz")
    expected = model.predict(pixels, verbose=0)
    n = len(encoded)
    for key in ("bytes1", f"bytes{n}", "float1", f"float{n}", "uint81", f"uint8{n}"):
        probabilities = outputs[f"{key}_probabilities"]
        np.testing.assert_allclose(probabilities, expected[: len(probabilities)], atol=1e-4, err_msg=key)
    top = expected.argmax(axis=-1)
    np.testing.assert_array_equal(outputs[f"bytes{n}_classes"], top)
    assert list(outputs[f"bytes{n}_class_names"]) == [CLASS_NAMES[i] for i in top]
    # A float batch at another size is resized in the graph as training resizes.
    resized = data.resize_image(tf.constant(large), SIZE, SIZE).numpy()
    np.testing.assert_allclose(outputs["large_probabilities"], model.predict(resized, verbose=0), atol=1e-4)


def test_saved_model_cli_lists_signatures(exported):
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    assert cli, "saved_model_cli comes with tensorflow"
    result = subprocess.run([cli, "show", "--all", "--dir", str(exported)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    listing = result.stdout
    assert "MetaGraphDef with tag-set: 'serve'" in listing
    for text in (
        "signature_def['serving_default']",
        "inputs['image_bytes']",
        "dtype: DT_STRING",
        "signature_def['predict_pixels_uint8']",
        "outputs['probabilities']",
        "outputs['class_names']",
        "shape: (-1, 3)",
    ):
        assert text in listing, f"{text!r} missing from saved_model_cli output"


def test_onnx_matches_predict(trained_model, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="install keras3-resnet[onnx] for the ONNX export")
    path, model = trained_model
    output = export.export_onnx(path, tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])

    pixels = _preprocess(_images())
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    (probabilities,) = session.run(None, {"images": pixels})
    np.testing.assert_allclose(probabilities, model.predict(pixels, verbose=0), atol=1e-4)
    (single,) = session.run(None, {"images": pixels[:1]})
    assert single.shape == (1, len(CLASS_NAMES))
    with pytest.raises(FileExistsError, match="model.onnx"):
        export.export_onnx(path, output)


def test_predict_reads_keras_file_and_export(trained_model, exported, tmp_path):
    path, model = trained_model
    files = []
    for index, encoded in enumerate(_images()):
        files.append(tmp_path / f"image{index}.{'png' if index == 1 else 'jpg'}")
        files[-1].write_bytes(encoded)
    expected = model.predict(_preprocess(_images()), verbose=0)

    for source in (path, exported, exported.parent):
        results = predict.predict_images(source, files, top=2)
        assert [r["image"] for r in results] == [str(f) for f in files]
        for row, result in zip(expected, results):
            best = np.argsort(-row)[:2]
            assert [entry["index"] for entry in result["top"]] == list(best)
            assert [entry["class"] for entry in result["top"]] == [CLASS_NAMES[i] for i in best]
            np.testing.assert_allclose([e["probability"] for e in result["top"]], row[best], atol=1e-4)


# The layout rules below do not depend on the backend, so they replace the
# SavedModel writer with a fast stand-in.
@pytest.fixture
def fake_writer(monkeypatch, tmp_path):
    calls = []

    def write(kind, model_path, output):
        calls.append(output)
        output.mkdir()
        (output / "saved_model.pb").write_text(f"export {len(calls)}")

    monkeypatch.setattr(export, "_under_tensorflow", write)
    model_path = tmp_path / "model.keras"
    model_path.write_bytes(b"stand-in")
    return model_path, calls


def test_versions_count_up_and_are_never_overwritten(fake_writer, tmp_path):
    model_path, _ = fake_writer
    base = tmp_path / "models"
    (base / "flowers" / "7").mkdir(parents=True)
    (base / "flowers" / "7" / "saved_model.pb").write_text("kept")
    (base / "flowers" / "notes").mkdir()

    assert export.export_saved_model(model_path, "flowers", base_dir=base) == base / "flowers" / "8"
    with pytest.raises(FileExistsError, match=r"flowers/7.*already exists.*\(9\)"):
        export.export_saved_model(model_path, "flowers", base_dir=base, version=7)
    assert (base / "flowers" / "7" / "saved_model.pb").read_text() == "kept"

    replaced = export.export_saved_model(model_path, "flowers", base_dir=base, version=7, overwrite=True)
    assert (replaced / "saved_model.pb").read_text() == "export 2"
    assert sorted(p.name for p in (base / "flowers").iterdir()) == ["7", "8", "notes"]


def test_failed_export_leaves_no_version(monkeypatch, tmp_path):
    model_path = tmp_path / "model.keras"
    model_path.write_bytes(b"stand-in")

    def half_written(kind, model_path, output):
        output.mkdir()
        (output / "saved_model.pb").write_text("partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_under_tensorflow", half_written)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(model_path, "flowers", base_dir=tmp_path / "models")
    # The folders this export created are removed again; TF Serving would
    # otherwise watch a model with no versions.
    assert not (tmp_path / "models").exists()

    (tmp_path / "kept" / "flowers").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(model_path, "flowers", base_dir=tmp_path / "kept")
    assert list((tmp_path / "kept" / "flowers").iterdir()) == []


def test_abandoned_staging_is_removed(fake_writer, tmp_path):
    model_path, _ = fake_writer
    model_dir = tmp_path / "models" / "flowers"
    # A process number above the kernel's limit cannot be running.
    abandoned = model_dir / ".export-99999999-abc" / "model"
    abandoned.mkdir(parents=True)
    other = model_dir / ".export-notes"
    other.mkdir()

    export.export_saved_model(model_path, "flowers", base_dir=tmp_path / "models")
    assert sorted(p.name for p in model_dir.iterdir()) == [".export-notes", "1"]


def test_concurrent_export_takes_the_next_version(monkeypatch, tmp_path):
    model_path = tmp_path / "model.keras"
    model_path.write_bytes(b"stand-in")
    model_dir = tmp_path / "models" / "flowers"

    def write_while_another_export_lands(kind, model_path, output):
        output.mkdir()
        (output / "saved_model.pb").write_text("ours")
        (model_dir / "1").mkdir()
        (model_dir / "1" / "saved_model.pb").write_text("theirs")

    monkeypatch.setattr(export, "_under_tensorflow", write_while_another_export_lands)
    assert export.export_saved_model(model_path, "flowers", base_dir=tmp_path / "models") == model_dir / "2"
    assert (model_dir / "1" / "saved_model.pb").read_text() == "theirs"
    assert (model_dir / "2" / "saved_model.pb").read_text() == "ours"


@pytest.mark.parametrize(
    "arguments, expected",
    [
        ({"name": "two words"}, "'two words'"),
        ({"name": "../up"}, "'../up'"),
        ({"name": "ok", "version": 0}, "0"),
        ({"name": "ok", "version": "2"}, "'2'"),
        ({"name": "ok", "version": 2**63}, str(2**63)),
        ({"name": "x" * 101}, "at most 100 characters"),
    ],
)
def test_bad_names_and_versions(fake_writer, tmp_path, arguments, expected):
    model_path, calls = fake_writer
    with pytest.raises((ValueError, TypeError), match=expected):
        export.export_saved_model(model_path, base_dir=tmp_path / "models", **arguments)
    assert not calls


def test_version_beyond_tf_serving_limit_is_skipped(fake_writer, tmp_path):
    model_path, _ = fake_writer
    (tmp_path / "models" / "flowers" / str(2**63)).mkdir(parents=True)
    (tmp_path / "models" / "flowers" / "4").mkdir()
    assert export.next_version(tmp_path / "models" / "flowers") == 5


def test_base_dir_that_is_a_file(fake_writer, tmp_path):
    model_path, calls = fake_writer
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(ValueError, match="afile' is a file"):
        export.export_saved_model(model_path, "flowers", base_dir=tmp_path / "afile")
    with pytest.raises(ValueError, match="flowers' is a file"):
        (tmp_path / "models").mkdir()
        (tmp_path / "models" / "flowers").write_text("mine")
        export.export_saved_model(model_path, "flowers", base_dir=tmp_path / "models")
    assert not calls
    assert (tmp_path / "afile").read_text() == "mine"


def test_bad_model_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        export.export_saved_model(tmp_path / "missing.keras", "ok", base_dir=tmp_path)
    (tmp_path / "model.h5").write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.keras file; received .*model\.h5"):
        export.export_saved_model(tmp_path / "model.h5", "ok", base_dir=tmp_path)


def test_missing_tensorflow_keeps_model(fake_writer, monkeypatch, tmp_path):
    import importlib.util

    model_path, calls = fake_writer
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real_find_spec(name, *a)
    )
    with pytest.raises(RuntimeError, match="Export needs TensorFlow.*pip install tensorflow.*unchanged"):
        export.export_saved_model(model_path, "ok", base_dir=tmp_path / "models")
    assert not calls
    assert model_path.read_bytes() == b"stand-in"


def _stock_classifier(activation):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation=activation, name="scores")(x))


@pytest.mark.parametrize("activation, softmax", [("softmax", True), (None, False)])
def test_serving_reads_the_classifier_activation(activation, softmax):
    assert export.serving_info(_stock_classifier(activation))["softmax"] is softmax


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: _stock_classifier("sigmoid"), "activation 'sigmoid'"),
        (lambda: keras_resnet.build(depth=8, family="cifar", width=0.25, include_top=False, pooling="avg"), "head_pool"),
    ],
)
def test_non_classifiers_cannot_be_served(make, expected):
    with pytest.raises(ValueError, match=expected):
        export.serving_info(make())


def test_fold_skips_convolution_with_activation():
    model = _stock_classifier("softmax")
    batch_norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    batch_norm.set_weights([w + 0.3 for w in batch_norm.get_weights()])
    folded = export.fold_batch_norm(model)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    x = np.random.default_rng(5).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_model_without_fixed_size_cannot_be_served():
    model = keras_resnet.build(depth=8, family="cifar", width=0.25, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match=r"fixed input size.*\(None, None, None, 3\)"):
        export.serving_info(model)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    shutil.which("tensorflow_model_server") is None,
    reason="tensorflow_model_server is not on PATH; see the README for running this test with the TF Serving image",
)
def test_tf_serving_rest_predict(trained_model, exported, tmp_path):
    import base64

    _, model = trained_model
    port = _free_port()
    server = subprocess.Popen(
        [
            "tensorflow_model_server",
            f"--rest_api_port={port}",
            "--port=0",
            "--rest_api_num_threads=2",
            "--model_name=cifar",
            f"--model_base_path={exported.parent.resolve()}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/models/cifar"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if json.load(response)["model_version_status"][0]["state"] == "AVAILABLE":
                        break
            except OSError:
                pass
            assert server.poll() is None, "tensorflow_model_server exited before loading the model"
            assert time.monotonic() < deadline, "TF Serving did not load the model within 60 s"
            time.sleep(0.5)

        encoded = _images()
        body = json.dumps({"instances": [{"b64": base64.b64encode(b).decode()} for b in encoded]}).encode()
        request = urllib.request.Request(f"{url}:predict", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            predictions = json.load(response)["predictions"]
    finally:
        server.terminate()
        server.wait(timeout=30)

    expected = model.predict(_preprocess(encoded), verbose=0)
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected, atol=1e-4)
    assert [p["class_names"] for p in predictions] == [CLASS_NAMES[i] for i in expected.argmax(-1)]


def test_fold_batch_norm_keeps_outputs():
    model = keras_resnet.build(depth=8, family="cifar", width=0.5, num_classes=3, class_names=CLASS_NAMES)
    rng = np.random.default_rng(4)
    batch_norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norms:
        gamma, beta, mean, variance = layer.get_weights()
        layer.set_weights([
            rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
            rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, variance.shape),
        ])

    folded = export.fold_batch_norm(model)

    assert not [layer for layer in folded.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(folded.layers) == len(model.layers)
    assert keras_resnet.class_names(folded) == CLASS_NAMES
    x = rng.uniform(-2, 2, (4, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_fold_mixed_precision_to_float32():
    from keras_resnet import training

    with training.precision_policy("mixed_bfloat16"):
        mixed = keras_resnet.build(depth=8, family="cifar", width=0.5, num_classes=3, class_names=CLASS_NAMES)
    reference = keras_resnet.build(depth=8, family="cifar", width=0.5, num_classes=3, class_names=CLASS_NAMES)
    rng = np.random.default_rng(6)
    reference.set_weights([w + rng.uniform(0, 0.2, w.shape) for w in mixed.get_weights()])
    mixed.set_weights(reference.get_weights())

    folded = export.fold_batch_norm(mixed)

    assert mixed.get_layer("stem_conv1").dtype_policy.name == "mixed_bfloat16"
    assert {layer.dtype_policy.name for layer in folded.layers} == {"float32"}
    x = rng.uniform(-2, 2, (4, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(folded.predict(x, verbose=0), reference.predict(x, verbose=0), atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="backend-independent; runs under tensorflow")
def test_onnx_of_logits_model_outputs_probabilities(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="install keras3-resnet[onnx] for the ONNX export")
    model = _stock_classifier(None)
    model.save(tmp_path / "logits.keras")
    session = onnxruntime.InferenceSession(str(export.export_onnx(tmp_path / "logits.keras")))
    x = np.random.default_rng(6).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    (probabilities,) = session.run(None, {"images": x})
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model.predict(x, verbose=0)))
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


# In-process: under another backend the export command would restart this
# process with the TensorFlow backend.
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the export command runs under tensorflow")
@pytest.mark.parametrize(
    "options, expected",
    [
        (["--format", "onnx", "--name", "x"], "--name apply to SavedModel exports only"),
        (["--name", "x", "--output", "m.onnx"], "--output applies to --format onnx only"),
        ([], "needs --name"),
    ],
)
def test_export_command_rejects_options_that_do_not_apply(fake_writer, capsys, options, expected):
    from keras_resnet import cli

    model_path, calls = fake_writer
    assert cli.main(["export", str(model_path), *options]) == 2
    assert expected in capsys.readouterr().err
    assert not calls
