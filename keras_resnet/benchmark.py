"""Side-by-side throughput of keras_resnet, plain Keras and pure PyTorch.

Every measurement runs in its own child process (one Keras backend per
process, and a clean peak-memory figure per contender). The contenders are
measured in turns, in a new order each round, so that noise from other work
on the machine hits them alike. The table shows the median over rounds.

Contenders:

- training, CIFAR ResNet-20 (32x32, batch 128) and ImageNet ResNet-50
  (224x224, batch 8), random data: keras_resnet with the settings of
  `keras-resnet train` on each backend, and again with `--precision auto`
  (bfloat16 on a CPU that has it); plain Keras (a ResNet written with
  stock layers, `compile()` defaults) on each backend; pure PyTorch eager
  with channels_last tensors. Training is timed over its steps alone, after
  two untimed steps that compile.
- inference, ResNet-50 at 224x224, batch 16: keras_resnet `predict` and
  `keras.applications.ResNet50` (random weights) on each backend; the
  keras_resnet model exported as a SavedModel (its `predict_pixels`
  signature) and as ONNX (onnxruntime), with the share of real images
  (the shipped CIFAR-10 validation images, resized to 224x224) whose top-1
  class the export gives as the float32 Keras model does.
- the input pipeline alone: decoded and augmented images per second from
  `load_datasets` (the shipped sample, or `--data FOLDER` such as the
  50,000 CIFAR-10 training images).

Usage:
    keras-resnet benchmark [--rounds 3] [--quick] [--data FOLDER]
    python experiments/benchmark.py [the same options]

It prints a table of images/s, peak resident memory and ratios, and writes
`experiments/results/benchmark-<time>.json` and a PNG bar chart beside it.
"""

import argparse
import datetime
import json
import os
import pathlib
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

RESULTS = pathlib.Path("experiments") / "results"
BACKENDS = ("tensorflow", "jax", "torch")
# (task, model) -> (image size, batch size). ResNet-50 training uses a small
# batch so that a step takes seconds, not minutes, on 2 CPU cores.
SHAPES = {
    ("train", "resnet20"): (32, 128),
    ("train", "resnet50"): (224, 8),
    ("infer", "resnet50"): (224, 16),
    ("pipeline", "cifar"): (32, 128),
}


def contenders(quick=False):
    """Return the list of measurements, each a dict of JSON-able settings."""
    items = []
    models = ("resnet20",) if quick else ("resnet20", "resnet50")
    for model in models:
        for backend in BACKENDS:
            items.append({"task": "train", "model": model, "impl": "keras_resnet", "backend": backend})
            items.append({"task": "train", "model": model, "impl": "keras_resnet_auto", "backend": backend})
            items.append({"task": "train", "model": model, "impl": "plain_keras", "backend": backend})
        items.append({"task": "train", "model": model, "impl": "pytorch", "backend": "torch"})
    for backend in ("tensorflow",) if quick else BACKENDS:
        items.append({"task": "infer", "model": "resnet50", "impl": "keras_resnet", "backend": backend})
        items.append({"task": "infer", "model": "resnet50", "impl": "keras_applications", "backend": backend})
    items.append({"task": "infer", "model": "resnet50", "impl": "saved_model", "backend": "tensorflow"})
    items.append({"task": "infer", "model": "resnet50", "impl": "onnx", "backend": "tensorflow"})
    items.append({"task": "pipeline", "model": "cifar", "impl": "keras_resnet", "backend": "tensorflow"})
    return items


def label(item):
    return f"{item['task']} {item['model']} {item['impl']} [{item['backend']}]"


def _random_batch(size, batch, classes, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, classes, batch)
    return x, y


def plain_keras_resnet(model, size, kernel_regularizer=None):
    # A ResNet written with stock Keras layers, as a user would without this
    # library: "same" padding, projection shortcuts, default initialisers.
    import keras
    from keras import layers

    def conv(filters, kernel, strides=1, padding="valid"):
        return layers.Conv2D(filters, kernel, strides, padding, use_bias=False, kernel_regularizer=kernel_regularizer)

    def unit(x, filters, strides, bottleneck):
        shortcut = x
        if strides != 1 or x.shape[-1] != filters * (4 if bottleneck else 1):
            shortcut = conv(filters * (4 if bottleneck else 1), 1, strides)(x)
            shortcut = layers.BatchNormalization()(shortcut)
        if bottleneck:
            y = layers.ReLU()(layers.BatchNormalization()(conv(filters, 1)(x)))
            y = layers.ReLU()(layers.BatchNormalization()(conv(filters, 3, strides, "same")(y)))
            y = layers.BatchNormalization()(conv(filters * 4, 1)(y))
        else:
            y = layers.ReLU()(layers.BatchNormalization()(conv(filters, 3, strides, "same")(x)))
            y = layers.BatchNormalization()(conv(filters, 3, 1, "same")(y))
        return layers.ReLU()(layers.Add()([shortcut, y]))

    inputs = keras.Input((size, size, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    if model == "resnet20":
        x = layers.ReLU()(layers.BatchNormalization()(conv(16, 3, padding="same")(x)))
        plan, bottleneck, classes = [(16, 3), (32, 3), (64, 3)], False, 10
    else:
        x = layers.ReLU()(layers.BatchNormalization()(conv(64, 7, 2, "same")(x)))
        x = layers.MaxPooling2D(3, 2, "same")(x)
        plan, bottleneck, classes = [(64, 3), (128, 4), (256, 6), (512, 3)], True, 1000
    for stage, (filters, blocks) in enumerate(plan):
        for block in range(blocks):
            x = unit(x, filters, 2 if stage > 0 and block == 0 else 1, bottleneck)
    x = layers.GlobalAveragePooling2D()(x)
    head = layers.Dense(classes, activation="softmax", kernel_regularizer=kernel_regularizer)
    return keras.Model(inputs, head(x))


def _keras_train(item, steps):
    import keras

    from keras_resnet import models
    from keras_resnet import training

    size, batch = SHAPES[(item["task"], item["model"])]
    if item["impl"].startswith("keras_resnet"):
        precision = "auto" if item["impl"] == "keras_resnet_auto" else training.TrainConfig.precision
        cfg = training.TrainConfig(model=item["model"], batch_size=batch, precision=precision)
        with training.precision_policy(cfg.precision):
            model = models.build(item["model"], input_normalization=([125.0] * 3, [63.0] * 3))
        model.compile(
            optimizer=training.make_optimizer(model, cfg, steps_per_epoch=100),
            loss="sparse_categorical_crossentropy",
            jit_compile=cfg.jit_compile,
        )
    else:
        model = plain_keras_resnet(item["model"], size)
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), loss="sparse_categorical_crossentropy")
    x, y = _random_batch(size, batch * steps, model.output_shape[-1])
    return fit_images_per_second(model, x, y, batch)


def fit_images_per_second(model, x, y, batch_size):
    """Return the images/s of one epoch of `model.fit` on `x`, `y`, timed over its steps alone.

    Two untimed steps run first, so a model fitted for the first time has
    compiled before the clock starts. The steps are timed as the PyTorch loop
    times them. On 2 AMD EPYC cores under TensorFlow, `fit` took 2.3 s more to
    return after its last step in about half the processes, which halved a
    10-step measurement of the whole call.
    """
    import keras

    model.fit(x[: 2 * batch_size], y[: 2 * batch_size], batch_size=batch_size, epochs=1, verbose=0)
    # Keras reads the epoch's logs before `on_epoch_end`, so under JAX's
    # asynchronous dispatch the last step has finished by then.
    marks = {}
    step_timer = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda step, logs: marks.setdefault("start", time.perf_counter()),
        on_epoch_end=lambda epoch, logs: marks.setdefault("end", time.perf_counter()),
    )
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False, callbacks=[step_timer])
    return len(x) / (marks["end"] - marks["start"])


def _torch_resnet(model):
    import torch
    from torch import nn

    class Unit(nn.Module):
        def __init__(self, inputs, filters, stride, bottleneck):
            super().__init__()
            out = filters * (4 if bottleneck else 1)
            if bottleneck:
                self.body = nn.Sequential(
                    nn.Conv2d(inputs, filters, 1, bias=False), nn.BatchNorm2d(filters), nn.ReLU(inplace=True),
                    nn.Conv2d(filters, filters, 3, stride, 1, bias=False), nn.BatchNorm2d(filters), nn.ReLU(inplace=True),
                    nn.Conv2d(filters, out, 1, bias=False), nn.BatchNorm2d(out),
                )
            else:
                self.body = nn.Sequential(
                    nn.Conv2d(inputs, filters, 3, stride, 1, bias=False), nn.BatchNorm2d(filters), nn.ReLU(inplace=True),
                    nn.Conv2d(filters, filters, 3, 1, 1, bias=False), nn.BatchNorm2d(filters),
                )
            self.shortcut = nn.Identity()
            if stride != 1 or inputs != out:
                self.shortcut = nn.Sequential(nn.Conv2d(inputs, out, 1, stride, bias=False), nn.BatchNorm2d(out))

        def forward(self, x):
            return torch.relu(self.body(x) + self.shortcut(x))

    if model == "resnet20":
        layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)]
        plan, bottleneck, channels, classes = [(16, 3), (32, 3), (64, 3)], False, 16, 10
    else:
        layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        plan, bottleneck, channels, classes = [(64, 3), (128, 4), (256, 6), (512, 3)], True, 64, 1000
    for stage, (filters, blocks) in enumerate(plan):
        for block in range(blocks):
            layers.append(Unit(channels, filters, 2 if stage > 0 and block == 0 else 1, bottleneck))
            channels = filters * (4 if bottleneck else 1)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)]
    return nn.Sequential(*layers)


def _pytorch_train(item, steps):
    import torch

    size, batch = SHAPES[(item["task"], item["model"])]
    model = _torch_resnet(item["model"]).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = _random_batch(size, batch, model[-1].out_features)
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last) / 255
    y = torch.from_numpy(y)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    model.train()
    step()
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def _infer(item, steps):
    import keras

    import keras_resnet

    size, batch = SHAPES[(item["task"], item["model"])]
    x, _ = _random_batch(size, batch, 1000)
    if item["impl"] == "keras_applications":
        model = keras.applications.ResNet50(weights=None)
        run = lambda: model.predict(keras.applications.resnet.preprocess_input(x.copy()), verbose=0)  # noqa: E731
    elif item["impl"] == "keras_resnet":
        model = keras_resnet.build("resnet50", input_normalization=([124.0, 116.0, 104.0], [58.0, 57.0, 57.0]))
        run = lambda: model.predict(x, verbose=0)  # noqa: E731
    else:
        _, export_run = _exported_runner(item["impl"])
        run = lambda: export_run(x)  # noqa: E731
    run()
    start = time.perf_counter()
    for _ in range(steps):
        run()
    return batch * steps / (time.perf_counter() - start)


def _exported_runner(impl, folder=None):
    """Export a random-weight ResNet-50; return the Keras model and a function of pixels to the export's output."""
    import keras_resnet
    from keras_resnet import export

    folder = pathlib.Path(folder or tempfile.mkdtemp(prefix="benchmark-"))
    model = keras_resnet.build(
        "resnet50", input_normalization=([124.0, 116.0, 104.0], [58.0, 57.0, 57.0]), class_names=[f"c{i}" for i in range(1000)]
    )
    if not (folder / "model.keras").exists():
        model.save(folder / "model.keras")
    if impl == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(export.export_onnx(folder / "model.keras")), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return model, lambda x: session.run(None, {name: x})[0]

    import tensorflow as tf

    version = export.export_saved_model(folder / "model.keras", "resnet50", base_dir=folder)
    signature = tf.saved_model.load(str(version)).signatures["predict_pixels"]
    return model, lambda x: signature(images=tf.constant(x))["probabilities"].numpy()


def _agreement(images):
    """Share of real images whose top-1 class each export gives as the float32 Keras model does."""
    import numpy as np
    import tensorflow as tf

    from keras_resnet import data as data_lib

    folder = tempfile.mkdtemp(prefix="benchmark-")
    model, saved_model = _exported_runner("saved_model", folder)
    _, onnx = _exported_runner("onnx", folder)
    # The same weights: the ONNX runner rebuilt a model but exported the saved file.
    validation = data_lib.load_datasets("sample", batch_size=50).validation
    same = {"saved_model": 0, "onnx": 0}
    count = 0
    for batch, _ in validation.take(images // 50):
        x = tf.image.resize(batch, (224, 224)).numpy()
        reference = np.argmax(model.predict(x, verbose=0), axis=-1)
        for impl, run in (("saved_model", saved_model), ("onnx", onnx)):
            same[impl] += int(np.sum(np.argmax(run(x), axis=-1) == reference))
        count += len(x)
    return {"images": count, **{impl: matches / count for impl, matches in same.items()}}


def _pipeline(item, steps, data):
    from keras_resnet import data as data_lib

    _, batch = SHAPES[(item["task"], item["model"])]
    datasets = data_lib.load_datasets(data, batch_size=batch, validation_split=0.1)
    # The first pass fills the cache, as the first epoch of training does.
    batches = iter(datasets.train.repeat())
    for _ in range(min(steps, 3)):
        next(batches)
    start = time.perf_counter()
    count = 0
    for _ in range(steps):
        images, _ = next(batches)
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def measure(item, steps, data):
    """Run one measurement in this process; return images/s and peak memory."""
    if item["task"] == "agreement":
        return _agreement(item["images"])
    if item["task"] == "pipeline":
        speed = _pipeline(item, steps * 4, data)
    elif item["task"] == "infer":
        speed = _infer(item, steps)
    elif item["impl"] == "pytorch":
        speed = _pytorch_train(item, steps)
    else:
        speed = _keras_train(item, steps)
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"images_per_second": speed, "peak_rss_mib": peak}


def run_child(item, steps, data):
    environment = dict(os.environ, KERAS_BACKEND=item["backend"], TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "keras_resnet.benchmark", "--child", json.dumps(item), "--steps", str(steps), "--data", data]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarise(items, rounds_results):
    rows = []
    for index, item in enumerate(items):
        runs = [r[index] for r in rounds_results if "error" not in r[index]]
        errors = [r[index]["error"] for r in rounds_results if "error" in r[index]]
        row = dict(item, label=label(item), rounds=len(runs), errors=errors)
        if runs:
            row["images_per_second"] = statistics.median(r["images_per_second"] for r in runs)
            row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
        rows.append(row)
    return rows


def _speed(rows, **match):
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()) and "images_per_second" in row:
            return row["images_per_second"]
    return None


def ratios(rows):
    """Return the ratios the targets are stated in, as (name, value, target)."""
    result = []
    for model in ("resnet20", "resnet50"):
        torch_speed = _speed(rows, task="train", model=model, impl="pytorch")
        plain = {b: _speed(rows, task="train", model=model, impl="plain_keras", backend=b) for b in BACKENDS}
        rivals = [speed for speed in (torch_speed, *plain.values()) if speed]
        # Targets for ResNet-20: the defaults at least 1.0x the faster rival,
        # and 1.3x as the goal.
        for impl, target in (("keras_resnet", 1.0), ("keras_resnet_auto", 1.3)):
            ours = {b: _speed(rows, task="train", model=model, impl=impl, backend=b) for b in BACKENDS}
            for backend in BACKENDS:
                if ours[backend] and plain[backend]:
                    result.append((f"train {model} [{backend}]: {impl} / plain Keras", ours[backend] / plain[backend], None))
            best = max((speed for speed in ours.values() if speed), default=None)
            if best and rivals:
                name = f"train {model}: best {impl} / faster of plain Keras and PyTorch"
                result.append((name, best / max(rivals), target if model == "resnet20" else None))
    applications = _speed(rows, task="infer", impl="keras_applications", backend="tensorflow")
    for impl, target in (("keras_resnet", None), ("saved_model", 1.5), ("onnx", None)):
        speed = _speed(rows, task="infer", impl=impl, backend="tensorflow")
        if speed and applications:
            result.append((f"infer resnet50 {impl} / keras.applications.ResNet50 [tensorflow]", speed / applications, target))
    pipeline = _speed(rows, task="pipeline")
    training = _speed(rows, task="train", model="resnet20", impl="keras_resnet", backend="tensorflow")
    if pipeline and training:
        result.append(("input pipeline / keras_resnet ResNet-20 training [tensorflow]", pipeline / training, 5.0))
    return result


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    shown = [row for row in rows if "images_per_second" in row]
    figure, axis = plt.subplots(figsize=(9, 0.35 * len(shown) + 1.2))
    colours = {"keras_resnet": "tab:blue", "keras_resnet_auto": "tab:cyan", "plain_keras": "tab:orange", "pytorch": "tab:red"}
    axis.barh(
        [row["label"] for row in shown],
        [row["images_per_second"] for row in shown],
        color=[colours.get(row["impl"], "tab:gray") for row in shown],
    )
    axis.set_xscale("log")
    axis.invert_yaxis()
    axis.set_xlabel("images per second (median over rounds, log scale)")
    axis.set_title("keras_resnet benchmark")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def add_arguments(parser):
    """Add the benchmark's options to `parser` (shared with `keras-resnet benchmark`)."""
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all contenders (default: 3)")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per measurement (default: 10, 3 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="ResNet-20 training and TensorFlow inference only")
    parser.add_argument("--data", default="sample", help="data for the input-pipeline measurement (default: sample)")
    parser.add_argument(
        "--agreement-images",
        type=int,
        default=1000,
        help="real images for the top-1 agreement of the exports (default: 1000, the whole shipped validation "
        "split; 0 skips it)",
    )
    parser.add_argument("--output", default=str(RESULTS), help="folder for the JSON and PNG files")


def run(args):
    """Measure every contender in turns and print the table and ratios; return 0."""
    for name in ("rounds", "agreement_images"):
        minimum = 1 if name == "rounds" else 0
        if getattr(args, name) < minimum:
            raise ValueError(f"`{name}` must be an integer >= {minimum}; received {getattr(args, name)!r}.")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"`steps` must be an integer >= 1; received {args.steps!r}.")
    steps = args.steps or (3 if args.quick else 10)
    items = contenders(args.quick)
    rounds_results = []
    for number in range(args.rounds):
        order = list(range(len(items)))
        random.Random(number).shuffle(order)
        results = [None] * len(items)
        for index in order:
            results[index] = run_child(items[index], steps, args.data)
            speed = results[index].get("images_per_second")
            outcome = f"{speed:9.1f} images/s" if speed else f"failed: {results[index]['error']}"
            print(f"round {number + 1}/{args.rounds}  {label(items[index]):<58} {outcome}", flush=True)
        rounds_results.append(results)
    agreement = None
    if args.agreement_images:
        item = {"task": "agreement", "images": args.agreement_images, "backend": "tensorflow"}
        agreement = run_child(item, steps, args.data)

    rows = summarise(items, rounds_results)
    print(f"\n{'contender':<58} {'images/s':>10} {'peak MiB':>9}")
    for row in rows:
        if "images_per_second" in row:
            print(f"{row['label']:<58} {row['images_per_second']:10.1f} {row['peak_rss_mib']:9.0f}")
        else:
            print(f"{row['label']:<58} failed: {row['errors'][-1]}")
    found = ratios(rows)
    if agreement and "error" not in agreement:
        for impl in ("saved_model", "onnx"):
            found.append(
                (f"top-1 agreement of {impl} with float32 Keras, {agreement['images']} real images", agreement[impl], 0.999)
            )
    elif agreement:
        print(f"top-1 agreement failed: {agreement['error']}")
    print(f"\n{'ratio':<84} {'value':>6} {'target':>7}")
    for name, value, target in found:
        if target is None:
            print(f"{name:<84} {value:6.3f}")
            continue
        verdict = "met" if value >= target else "not met"
        print(f"{name:<84} {value:6.3f} {target:6.3g}x {verdict}")

    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    record = {
        "rounds": args.rounds, "steps": steps, "cpu_count": os.cpu_count(), "rows": rows, "agreement": agreement,
        "ratios": [{"name": n, "value": v, "target": t} for n, v, t in found],
    }
    (output / f"benchmark-{stamp}.json").write_text(json.dumps(record, indent=2) + "\n")
    plot(rows, output / f"benchmark-{stamp}.png")
    print(f"\nWrote {output / f'benchmark-{stamp}.json'} and .png")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(json.loads(args.child), args.steps or 10, args.data)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
