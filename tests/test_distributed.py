"""Training in two gloo processes on CPU, launched the way users launch it (torchrun).

Rank 0 alone writes and publishes the run; the run matches a single-process one; a rank
that dies ends the other with an error, within the process-group timeout, and nothing is
published; --resume continues the interrupted run under torchrun.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, tiny_config, validation_split

from sentitune.inference.classifier import Classifier
from sentitune.metrics import classification_metrics
from sentitune.run import Run
from sentitune.training import train

# The two-process run samples its batches differently from the one-process run (a
# distributed sampler), so its numbers differ; on this learnable toy task both must land
# this close to each other.
ACCURACY_TOLERANCE = 0.1
TIMEOUT_S = 30  # SENTITUNE_DIST_TIMEOUT for the failure tests


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint written to the end (trainer_state.json comes last); unlike
    `checkpoints.resumable` it removes nothing, so it can watch a run that is saving."""
    complete = [path for path in folder.glob("checkpoint-*")
                if (path / "trainer_state.json").is_file()]
    return max(complete, key=lambda path: int(path.name.rsplit("-", 1)[-1]), default=None)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"  # two processes share the two cores
    env["SENTITUNE_DIST_TIMEOUT"] = str(TIMEOUT_S)
    return env | extra


def _train_args(model: Path, data: Path, output: Path, *extra: str) -> list[str]:
    return ["-m", "sentitune", "train", "--model", str(model), "--data", str(data),
            "--max-length", "32", "--batch-size", "16", "--learning-rate", "1e-2",
            "--warmup-ratio", "0", "--seed", "7", "--output", str(output), "--quiet", *extra]


def torchrun(*args: str, processes: int = 2, timeout: float = 300
             ) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node N ARGS` (a free rendezvous port each time)."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         str(processes), *args], env=_env(), capture_output=True, text=True, timeout=timeout)


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def test_two_gloo_processes_make_one_run_like_a_single_process(tmp_path, tiny_bert,
                                                               sentiment_csv):
    single = train(tiny_config(tiny_bert, sentiment_csv, batch_size=32, epochs=4.0),
                   tmp_path / "single", progress=False).run_dir
    double = tmp_path / "double"
    done = torchrun(*_train_args(tiny_bert, sentiment_csv, double, "--epochs", "4"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run saved to") == 1  # rank 0 speaks for both
    assert _files(double) == _files(single)
    assert not double.with_name("double.partial").exists()

    facts = yaml.safe_load((double / "config.yaml").read_text())
    assert facts["distributed"] == {"world_size": 2, "backend": "gloo",
                                    "effective_batch_size": 32}
    assert yaml.safe_load((single / "config.yaml").read_text())["distributed"][
        "effective_batch_size"] == 32
    two, one = (json.loads((d / "metrics.json").read_text())["validation"]
                for d in (double, single))
    assert abs(two["accuracy"] - one["accuracy"]) <= ACCURACY_TOLERANCE, (two, one)
    assert two["accuracy"] >= 0.75

    # The metrics saved by rank 0 cover every validation row exactly once: scoring the
    # saved model in one process over the run's validation rows gives the same numbers.
    rows = validation_split(double)
    run = Run.open(double)
    probs = Classifier.from_pretrained(double).predict_proba(list(rows["text"]))
    again = classification_metrics(np.asarray(rows["label"]), probs, run.task, run.labels)
    assert again["accuracy"] == pytest.approx(two["accuracy"], abs=1e-9)
    assert again["loss"] == pytest.approx(two["loss"], abs=1e-4)
    assert np.array_equal(again["confusion_matrix"], two["confusion_matrix"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_killed_rank_ends_the_other_with_an_error_and_resume_finishes(tmp_path, tiny_bert,
                                                                         sentiment_csv):
    """Two processes launched by hand (no torchrun agent to clean up): rank 1 is killed
    once an epoch's checkpoint is complete; rank 0 must stop by itself with one error line."""
    output = tmp_path / "killed"
    staging = tmp_path / "killed.partial"
    port = str(_free_port())
    args = _train_args(tiny_bert, sentiment_csv, output, "--epochs", "40")
    ranks = [subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for r in range(2)]
    try:
        deadline = time.monotonic() + 180
        while last_complete_checkpoint(staging / "checkpoints") is None:
            assert time.monotonic() < deadline, "no checkpoint appeared"
            assert all(p.poll() is None for p in ranks), ranks[0].communicate()[1][-3000:]
            time.sleep(0.05)
        ranks[1].kill()
        killed_at = time.monotonic()
        _, err = ranks[0].communicate(timeout=TIMEOUT_S + 60)
        assert time.monotonic() - killed_at < TIMEOUT_S + 30
    finally:
        for process in ranks:
            process.kill()
            process.communicate()
    assert ranks[0].returncode == 2, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "training process 0 of 2 lost its peers" in errors[0], err
    assert not output.exists()  # nothing published
    resumed_from = last_complete_checkpoint(staging / "checkpoints")
    assert resumed_from is not None
    # Mark the checkpoint's logged first epoch: a resumed run carries its log on, a run
    # that started again would log that epoch afresh.
    state_file = resumed_from / "trainer_state.json"
    state = json.loads(state_file.read_text())
    first = next(entry for entry in state["log_history"] if "eval_loss" in entry)
    first["eval_loss"] = 123.0
    state_file.write_text(json.dumps(state))

    # --resume under torchrun continues from that checkpoint (4 epochs in all now).
    done = torchrun(*_train_args(tiny_bert, sentiment_csv, output, "--epochs", "4",
                                 "--resume"))
    assert done.returncode == 0, done.stderr[-3000:]
    history = Run.open(output).history()
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[0]["val_loss"] == 123.0
    assert not staging.exists()


def test_more_processes_than_training_rows_is_an_error_on_every_rank(tmp_path, tiny_bert):
    data, validation = tmp_path / "two.csv", tmp_path / "val.csv"
    data.write_text("text,label\nthe film was great,positive\nit was dull,negative\n")
    validation.write_text("text,label\na lovely film,positive\nan awful film,negative\n")
    done = torchrun(*_train_args(tiny_bert, data, tmp_path / "run", "--validation-data",
                                 str(validation)), processes=3)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines()
              if "error: 3 training processes for 2 training rows" in line]
    # Each rank finds it before any collective; torchrun stops the other once one exits.
    assert errors, done.stderr[-3000:]
    assert not (tmp_path / "run").exists()


def test_accelerate_launch_makes_the_same_run_as_torchrun(tmp_path, tiny_bert, sentiment_csv):
    """`accelerate launch` (its multi-process launcher; on a machine without GPUs the
    processes join over gloo) trains like torchrun: one published run, rank 0 speaking."""
    by_torchrun, by_accelerate = tmp_path / "torchrun", tmp_path / "accelerate"
    done = torchrun(*_train_args(tiny_bert, sentiment_csv, by_torchrun, "--epochs", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    # A config file in the user's cache would override these flags: point at none.
    launched = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
         "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
         *_train_args(tiny_bert, sentiment_csv, by_accelerate, "--epochs", "2")],
        env=_env(HF_HOME=str(tmp_path / "hf-home")), capture_output=True, text=True,
        timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("run saved to") == 1
    assert _files(by_accelerate) == _files(by_torchrun)
    facts = yaml.safe_load((by_accelerate / "config.yaml").read_text())
    assert facts["distributed"] == {"world_size": 2, "backend": "gloo",
                                    "effective_batch_size": 32}
    # Same processes, same seed, same sampler: the same model, whichever launcher started it.
    metrics = [json.loads((d / "metrics.json").read_text())["validation"]
               for d in (by_torchrun, by_accelerate)]
    assert metrics[0]["loss"] == pytest.approx(metrics[1]["loss"], abs=1e-6)
