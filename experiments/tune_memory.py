"""Measure resident memory across the trials of one tuning process.

Runs a random search of tiny trials on the shipped sample in one process:
CIFAR ResNet-8 and ResNet-14 at widths 0.25 and 0.5, one epoch of 4 steps of
32 images. It then prints the resident memory that each trial recorded in its
`measures.json` right after training. Keras Tuner clears the Keras session
before it builds each trial's model; memory that still grows by a similar
amount every trial would show a leak.

    KERAS_BACKEND=jax python experiments/tune_memory.py --trials 12
"""

import argparse
import json
import logging
import pathlib
import tempfile

import keras

from keras_resnet import training
from keras_resnet import tuning


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="trials to run (default: 12)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as directory:
        cfg = tuning.TuneConfig(
            max_trials=args.trials,
            depths=(8, 14),
            widths=(0.25, 0.5),
            train=training.TrainConfig(epochs=1, batch_size=32),
            steps_per_epoch=4,
            validation_steps=2,
            directory=directory,
        )
        result = tuning.tune(cfg)
        figures = [
            json.loads((pathlib.Path(result.project_dir) / f"trial_{row['trial']}" / tuning.MEASURES_FILE).read_text())
            for row in result.rows
        ]

    resident = [measures["resident_mib"] for measures in figures]
    print(f"backend {keras.backend.backend()}, {len(resident)} trials")
    print("resident MiB after each trial:", ", ".join(f"{value:.0f}" for value in resident))
    half = len(resident) // 2
    print(
        f"growth: trial 1 -> {half}: {resident[half - 1] - resident[0]:+.0f} MiB; "
        f"trial {half} -> {len(resident)}: {resident[-1] - resident[half - 1]:+.0f} MiB"
    )


if __name__ == "__main__":
    main()
