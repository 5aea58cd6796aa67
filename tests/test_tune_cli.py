"""`keras-resnet tune` as separate processes: kill and resume, chief and workers.

These tests start several Python processes each and take minutes, so they
run under one backend, torch, whose tiny trials start fastest on a CPU
(about 17 s for a 3-trial search against 34 s under jax). The in-process
search in test_tuning.py runs under every backend.
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import keras
import pytest

import keras_resnet

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="starts several processes per test; runs under torch"
)

# One-epoch trials of 6 steps over ResNet-8 at two widths: long enough for a
# kill to land inside a trial, short enough for a test.
SMALL_SEARCH = (
    "--depths", "8", "--widths", "0.25", "0.5", "--batch-size", "32", "--steps-per-epoch", "6",
    "--validation-steps", "2", "--epochs", "1",
)  # fmt: skip


def cli_command(*args):
    return [sys.executable, "-m", "keras_resnet.cli", "tune", *args]


def cli_environment():
    environment = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        environment.pop(name, None)
    return environment


def run_tune(*args):
    return subprocess.run(
        cli_command(*args), env=cli_environment(), capture_output=True, text=True, timeout=600
    )


def trial_states(project):
    return {
        path.parent.name: json.loads(path.read_text())
        for path in sorted(pathlib.Path(project).glob("trial_*/trial.json"))
    }


def wait_for(path, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the search ended (status {process.returncode}) before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.05)


def test_bad_budget_is_one_line_error(tmp_path):
    result = run_tune("--max-params", "0", "--directory", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "keras-resnet: error: --max-params must be an integer >= 1; received 0."
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "tuner, extra, expected_trials",
    [
        ("random", ("--max-trials", "3"), 3),
        # Hyperband with at most 3 epochs runs three 1-epoch trials, then
        # continues the best of them to epoch 3 as trial 3.
        ("hyperband", ("--max-trials", "4", "--epochs", "3"), 4),
    ],
)
def test_sigkill_mid_trial_then_resume(tmp_path, tuner, extra, expected_trials):
    args = (*SMALL_SEARCH, "--tuner", tuner, *extra, "--directory", str(tmp_path))
    project = tmp_path / f"cifar-{tuner}"
    first = subprocess.Popen(
        cli_command(*args), env=cli_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # measures.json is written just before the trial compiles and trains.
        wait_for(project / "trial_1" / "measures.json", first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    states = trial_states(project)
    assert states["trial_0"]["status"] == "COMPLETED"
    assert states["trial_1"]["status"] == "RUNNING"
    finished_trial = (project / "trial_0" / "trial.json").read_text()

    second = run_tune(*args)

    assert second.returncode == 0, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    started = re.findall(r"starts trial (\d+)", second.stderr)
    assert started[0] == "1"
    assert "0" not in started
    assert (project / "trial_0" / "trial.json").read_text() == finished_trial
    states = trial_states(project)
    assert len(states) == expected_trials
    assert {state["status"] for state in states.values()} == {"COMPLETED"}
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["trials"] == expected_trials
    assert summary["completed"] == expected_trials
    if tuner == "hyperband":
        last = states[f"trial_{expected_trials - 1}"]["hyperparameters"]["values"]
        assert last["tuner/trial_id"] in ("0", "1", "2")
        assert (last["tuner/initial_epoch"], last["tuner/epochs"]) == (1, 3)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_chief_and_two_workers(tmp_path):
    args = (*SMALL_SEARCH, "--max-trials", "4", "--directory", str(tmp_path), "--oracle-port", str(free_port()))
    roles = {"chief": ("--chief",), "worker0": ("--worker", "worker0"), "worker1": ("--worker", "worker1")}
    processes = {
        name: subprocess.Popen(
            cli_command(*args, *role), env=cli_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, role in roles.items()
    }
    outputs = {}
    try:
        for name, process in processes.items():
            outputs[name] = process.communicate(timeout=600)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    for name, process in processes.items():
        assert process.returncode == 0, f"{name}: {outputs[name][1][-3000:]}"

    ran = {}
    for worker in ("worker0", "worker1"):
        line = re.search(r"Worker \w+ ran trials: (.*)\. The chief", outputs[worker][0]).group(1)
        ran[worker] = [] if line == "none" else line.split(", ")
    every_run = ran["worker0"] + ran["worker1"]
    assert sorted(every_run) == ["0", "1", "2", "3"]
    assert all(ran.values()), f"each worker should run a trial: {ran}"

    project = tmp_path / "cifar-random"
    states = trial_states(project)
    assert {state["status"] for state in states.values()} == {"COMPLETED"}
    best_id = max(states.values(), key=lambda state: state["score"])["trial_id"]
    summary = json.loads(outputs["chief"][0].strip().splitlines()[-1])
    assert summary["best_trial"] == best_id
    assert summary["val_accuracy"] == states[f"trial_{best_id}"]["score"]

    # The chief's best_model.keras contains the weights that the worker
    # saved for the best trial.
    best = keras_resnet.load_model(summary["best_model"], compile=False)
    checkpoint = keras.models.clone_model(best)
    checkpoint.load_weights(project / f"trial_{best_id}" / "checkpoint.weights.h5")
    for saved, trained in zip(best.weights, checkpoint.weights):
        assert keras.ops.all(keras.ops.equal(saved, trained))
