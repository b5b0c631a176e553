"""Nothing lost, nobody blocked: faults injected for real.

kill -9 of training mid-epoch (and a checkpoint left half-written) and while publishing,
then --resume; a second writer and a dead writer's lock; damaged run directories under
every command; a killed `predict --output`; a big batch request beside single texts; an
overloaded queue.
"""

import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import assert_one_line_error, make_sentiment_frame, run_cli, tiny_config

from sentitune.inference.classifier import length_batches
from sentitune.run import Run
from sentitune.server import ServeSettings, create_app, serve_in_thread

# 216 training rows at batch 16: 14 steps an epoch, a checkpoint every 4 steps; batches of
# similar length, in an order drawn afresh every epoch.
STEPS_PER_EPOCH = 14
TRAIN_FLAGS = ["--max-length", "32", "--epochs", "2", "--batch-size", "16",
               "--learning-rate", "1e-2", "--warmup-ratio", "0", "--seed", "7",
               "--checkpoint-every", "4", "--group-by-length", "--quiet"]


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    make_sentiment_frame(240).to_csv(path, index=False)
    return path


def train_flags(model: Path, data: Path) -> list[str]:
    return ["--data", str(data), "--model", str(model), *TRAIN_FLAGS]


def sentitune_process(*argv: str) -> subprocess.Popen:
    """`sentitune ARGV` in a process of its own, to be killed."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "sentitune", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_when(process: subprocess.Popen, ready, what: str, timeout: float = 300) -> None:
    """SIGSTOP then SIGKILL `process` as soon as `ready()` holds: kill -9, no cleanup."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the process ended (code {process.returncode}) before {what}: "
                        f"{process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.005)
    process.send_signal(signal.SIGSTOP)  # frozen at once: the state is the one observed
    process.kill()
    process.wait()
    process.stderr.close()


def weights(run_dir: Path) -> str:
    return hashlib.sha256((run_dir / "model" / "model.safetensors").read_bytes()).hexdigest()


def steps(checkpoints: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_bert, reviews) -> Path:
    out = tmp_path_factory.mktemp("runs") / "uninterrupted"
    process = sentitune_process("train", *train_flags(tiny_bert, reviews), "--output", str(out))
    assert process.wait(timeout=600) == 0, process.stderr.read().decode()[-3000:]
    process.stderr.close()
    # The run keeps its second epoch: a resume inside it must reproduce that epoch's batches.
    assert json.loads((out / "metrics.json").read_text())["best_epoch"] == 2
    return out


# --- training: killed, resumed, identical ---------------------------------------------------


def test_killed_mid_epoch_resumes_from_a_step_checkpoint_to_identical_weights(
        capsys, tmp_path, tiny_bert, reviews, uninterrupted):
    out = tmp_path / "run"
    checkpoints = tmp_path / "run.partial" / "checkpoints"

    def mid_second_epoch() -> bool:  # a complete step checkpoint inside epoch 2
        return any(step > STEPS_PER_EPOCH and step % STEPS_PER_EPOCH
                   and (checkpoints / f"checkpoint-{step}" / "sessions.json").exists()
                   for step in steps(checkpoints))

    kill_when(sentitune_process("train", *train_flags(tiny_bert, reviews), "--output", str(out)),
              mid_second_epoch, "a step checkpoint in epoch 2")
    assert not out.exists() and (tmp_path / "run.lock").exists()  # the dead writer's lock
    last = max(s for s in steps(checkpoints) if (checkpoints / f"checkpoint-{s}" /
                                                 "sessions.json").exists())
    killed_session = json.loads((checkpoints / f"checkpoint-{last}" / "sessions.json")
                                .read_text())[0]
    # As if killed while writing the next checkpoint: its state file never came.
    half = checkpoints / f"checkpoint-{max(steps(checkpoints)) + 1}"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\0" * 10)
    # As if killed while removing a newer one: its state file stayed, its weights went.
    emptied = checkpoints / f"checkpoint-{max(steps(checkpoints)) + 1}"
    shutil.copytree(checkpoints / f"checkpoint-{last}", emptied)
    (emptied / "model.safetensors").unlink()

    code, _, err = run_cli(capsys, "train", *train_flags(tiny_bert, reviews), "--output",
                           str(out), "--resume")
    assert code == 0, err
    assert "taking over the lock" in err and "gone" in err
    # The Trainer would have picked them and failed.
    assert f"removing {half.name}" in err and f"removing {emptied.name}" in err
    assert weights(out) == weights(uninterrupted)  # byte for byte
    resumed, whole = (json.loads((d / "metrics.json").read_text()) for d in (out, uninterrupted))
    assert resumed["sessions"] == 2 and whole["sessions"] == 1
    assert resumed["train_runtime_s"] > killed_session["runtime_s"] > 0
    assert resumed["peak_memory_mb"] >= killed_session["peak_memory_mb"]
    assert resumed["train_samples_per_s"] > 0
    assert resumed["best_epoch"] == whole["best_epoch"]  # per-epoch evaluation still picks
    assert [row["epoch"] for row in Run.open(out).history()] == [1.0, 2.0]
    assert not (tmp_path / "run.lock").exists() and not checkpoints.parent.exists()


def test_killed_while_publishing_resumes_to_identical_weights(
        capsys, tmp_path, tiny_bert, reviews, uninterrupted):
    out = tmp_path / "run"
    staged_weights = tmp_path / "run.partial" / "model" / "model.safetensors"
    kill_when(sentitune_process("train", *train_flags(tiny_bert, reviews), "--output", str(out)),
              staged_weights.exists, "the final write")
    assert not out.exists()
    last = tmp_path / "run.partial" / "checkpoints" / f"checkpoint-{2 * STEPS_PER_EPOCH}"
    first_session = json.loads((last / "sessions.json").read_text())[0]
    code, _, err = run_cli(capsys, "train", *train_flags(tiny_bert, reviews), "--output",
                           str(out), "--resume")
    assert code == 0, err
    assert weights(out) == weights(uninterrupted)
    metrics = json.loads((out / "metrics.json").read_text())
    # The first session trained everything: the totals are not the short second one's.
    assert metrics["sessions"] == 2
    assert metrics["train_runtime_s"] > first_session["runtime_s"] > 0


class Interrupt(Exception):
    pass


def test_resume_with_other_settings_is_refused_naming_them(capsys, tmp_path, tiny_bert,
                                                           reviews):
    from transformers import TrainerCallback

    from sentitune.training import train

    class StopAtStep2(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise Interrupt

    out = tmp_path / "run"
    config = tiny_config(tiny_bert, reviews, checkpoint_every="1")
    with pytest.raises(Interrupt):
        train(config, out, progress=False, callbacks=[StopAtStep2()])
    flags = ["--data", str(reviews), "--model", str(tiny_bert), "--max-length", "32",
             "--epochs", "2", "--batch-size", "16", "--warmup-ratio", "0", "--seed", "7",
             "--quiet", "--output", str(out), "--resume"]
    code, _, err = run_cli(capsys, "train", *flags, "--learning-rate", "1e-3",
                           "--train-samples", "100", "--checkpoint-every", "1")
    assert_one_line_error(code, err, "--resume", "--learning-rate 0.001 (was 0.01)",
                          "--train-samples 100 (was none)")
    assert "checkpoint-every" not in err  # how often to save does not touch the weights
    assert (tmp_path / "run.partial" / "checkpoints").is_dir() and not out.exists()
    # With its own settings it resumes (a changed checkpoint interval is fine).
    code, _, err = run_cli(capsys, "train", *flags, "--learning-rate", "1e-2",
                           "--checkpoint-every", "none")
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["sessions"] == 2


@pytest.mark.parametrize("setting", ["0", "5x", "m", "1.5m"])
def test_a_bad_checkpoint_interval_is_one_line(capsys, tmp_path, setting):
    code, _, err = run_cli(capsys, "train", "--checkpoint-every", setting, "--output",
                           str(tmp_path / "x"))
    assert_one_line_error(code, err, "--checkpoint-every", "10m")


# --- tune: killed, resumed, never two at once ------------------------------------------------


def test_a_second_search_is_refused_and_a_killed_ones_leftovers_go_with_the_next(
        capsys, tmp_path, tiny_bert, reviews):
    pytest.importorskip("optuna")
    from conftest import read_trials_csv

    out = tmp_path / "study"
    flags = ["--data", str(reviews), "--model", str(tiny_bert), "--max-length", "32",
             "--batch-size", "16", "--epochs", "1", "--seed", "7", "--quiet",
             "--search", "learning_rate=1e-3:3e-2", "--output", str(out)]
    first = sentitune_process("tune", *flags, "--trials", "1")
    trial_run = out / "trials" / "trial-0.partial"

    def training_a_trial() -> bool:
        if not trial_run.is_dir():
            return False
        code, _, err = run_cli(capsys, "tune", *flags, "--trials", "1")
        assert_one_line_error(code, err, str(out), f"pid {first.pid}", "wait for it")
        return True

    kill_when(first, training_a_trial, "a trial training")
    assert trial_run.is_dir() and (tmp_path / "study.lock").exists()  # kill -9 left them

    code, _, err = run_cli(capsys, "tune", *flags, "--trials", "3")
    assert code == 0, err
    assert "taking over the lock" in err
    rows = read_trials_csv(out)
    assert [r["state"] for r in rows][0] == "fail"  # the killed one
    rates = [float(r["learning_rate"]) for r in rows]
    assert rates[1] == pytest.approx(rates[0])  # the cut-off trial, tried again
    assert rates[2] != pytest.approx(rates[0])  # a new trial draws new parameters
    assert not any((out / "trials").iterdir()) and not (tmp_path / "study.lock").exists()


# --- the run-directory lock -----------------------------------------------------------------


HOLD = """
import sys, time
from sentitune.run import Run
Run.stage(sys.argv[1])
print("holding", flush=True)
time.sleep(600)
"""


def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(
        capsys, tmp_path, tiny_bert, reviews):
    out = tmp_path / "run"
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        code, _, err = run_cli(capsys, "train", *train_flags(tiny_bert, reviews), "--output",
                               str(out))
        assert_one_line_error(code, err, str(out), f"pid {holder.pid}", socket.gethostname(),
                              "since 20", "wait for it")
        assert (tmp_path / "run.partial").is_dir() and not out.exists()  # theirs, untouched
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # kill -9 left the lock behind; the next writer sees its writer is gone and takes it.
    lock = json.loads((tmp_path / "run.lock").read_text())
    assert lock["pid"] == holder.pid
    staging = Run.stage(out, resume=True)
    assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    staging.release()
    assert not (tmp_path / "run.lock").exists()


def test_of_two_writers_starting_together_exactly_one_wins(tmp_path):
    out = tmp_path / "run"
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    race = """
import sys, time
from sentitune.errors import SentituneError
from sentitune.run import Run
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
try:
    Run.stage(sys.argv[1])
    print("won", flush=True)
    sys.stdin.read()  # hold the lock until every writer has answered
except SentituneError as exc:
    print("lost", exc, flush=True)
"""
    # The winner holds its lock until all three have answered: a winner that exited after a
    # fixed sleep left a stale lock that a writer slow to import (a loaded CI machine) took
    # over, answering "won" twice.
    start = f"{time.time() + 8:.3f}"
    writers = [subprocess.Popen([sys.executable, "-c", race, str(out), start], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(3)]
    answers = [w.stdout.readline() for w in writers]
    for w in writers:
        w.communicate(timeout=60)
    assert sorted(a.split()[0] for a in answers) == ["lost", "lost", "won"], answers


RACE_ROUNDS = """
import os, sys, time, warnings
from pathlib import Path
from sentitune.errors import SentituneError
from sentitune.run import Run
warnings.simplefilter("ignore")
root, racers, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def barrier(name):  # every racer waits here until all have come
    (root / f"{name}-{os.getpid()}").touch()
    deadline = time.time() + 120
    while len(list(root.glob(f"{name}-*"))) < racers and time.time() < deadline:
        time.sleep(0.001)

for k in range(rounds):
    barrier(f"ready{k}")
    try:
        staging = Run.stage(root / f"run-{k}", resume=True)
    except SentituneError:
        staging = None
    print(k, "won" if staging else "lost", flush=True)
    barrier(f"answered{k}")  # the winner holds the lock until every racer has tried
    if staging:
        staging.release()
"""


def test_of_six_writers_racing_for_a_dead_writers_lock_exactly_one_takes_it(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rounds = 20
    for k in range(rounds):
        (tmp_path / f"run-{k}.lock").write_text(json.dumps(
            {"pid": dead.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00",
             "process_started": 1.0}))
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    racers = [subprocess.Popen([sys.executable, "-c", RACE_ROUNDS, str(tmp_path), "6",
                                str(rounds)], env=env, stdout=subprocess.PIPE, text=True)
              for _ in range(6)]
    answers = [line.split() for racer in racers
               for line in racer.communicate(timeout=120)[0].splitlines()]
    winners = {k: sum(1 for round_, answer in answers if int(round_) == k and answer == "won")
               for k in range(rounds)}
    assert len(answers) == 6 * rounds
    assert winners == dict.fromkeys(range(rounds), 1)


# --- damaged run directories ----------------------------------------------------------------


def _truncate_weights(run: Path) -> None:
    weights_file = run / "model" / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:1000])


def _pickle_weights_only(run: Path) -> None:
    import torch
    from safetensors.torch import load_file

    state = load_file(run / "model" / "model.safetensors")
    torch.save(state, run / "model" / "pytorch_model.bin")
    (run / "model" / "model.safetensors").unlink()


def _link_out(run: Path, name: str) -> None:
    """Move a run file out of the run and leave a symbolic link to it in its place."""
    inside = run / name
    outside = run.parent / f"elsewhere-{inside.name}"
    inside.rename(outside)
    inside.symlink_to(outside)


def _edit_json(run: Path, name: str, **changes) -> None:
    payload = json.loads((run / name).read_text())
    (run / name).write_text(json.dumps(payload | changes))


DAMAGE = {
    "truncated weights": (_truncate_weights, ["model.safetensors", "cannot be loaded"]),
    "pickle weights only": (_pickle_weights_only, ["pytorch_model.bin", "safetensors only"]),
    "config not UTF-8": (lambda run: (run / "config.yaml").write_bytes(b"\xff\xfe data"),
                         ["config.yaml", "not UTF-8"]),
    "config not YAML": (lambda run: (run / "config.yaml").write_text("data: [\n"),
                        ["config.yaml", "not valid YAML"]),
    "config a list": (lambda run: (run / "config.yaml").write_text("- data\n- model\n"),
                      ["config.yaml", "must hold a mapping"]),
    "config empty": (lambda run: (run / "config.yaml").write_text(""),
                     ["config.yaml", "holds no settings"]),
    "labels of another model": (
        lambda run: _edit_json(run, "labels.json", labels=["negative", "neutral", "positive"]),
        ["labels.json", "3 labels", "2 outputs"]),
    "labels not names": (lambda run: _edit_json(run, "labels.json", labels=[0, 0]),
                         ["labels.json", "distinct label names"]),
    "review threshold a word": (lambda run: _edit_json(run, "decision.json",
                                                       review_threshold="high"),
                                ["decision.json", "review_threshold", "'high'"]),
    "temperature zero": (lambda run: _edit_json(run, "decision.json", temperature=0),
                         ["decision.json", "temperature"]),
    "weights a link out of the run": (
        lambda run: _link_out(run, "model/model.safetensors"),
        ["model.safetensors", "outside the run"]),
    "config a link out of the run": (lambda run: _link_out(run, "config.yaml"),
                                     ["config.yaml", "outside the run"]),
}
COMMANDS = {
    "predict": ["Loved it."],
    "evaluate": ["--no-behavioral"],
    "export": ["--quiet"],  # its progress lines on stderr would precede the error
    "serve": ["--port", "0"],
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_runs_are_one_line_errors_in_every_command(capsys, tmp_path, tiny_run_dir,
                                                           damage):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    shutil.rmtree(run / "onnx", ignore_errors=True)  # another test may have exported it
    damage_run, expected = DAMAGE[damage]
    damage_run(run)
    for command, extra in COMMANDS.items():
        code, out, err = run_cli(capsys, command, str(run), *extra)
        assert_one_line_error(code, err, *expected)
        assert "Traceback" not in out + err
    assert not (run / "onnx").exists()  # nothing half-written


def test_a_text_too_long_to_tokenize_is_one_line_in_train_and_predict(capsys, tmp_path,
                                                                     tiny_run_dir, tiny_bert):
    from sentitune.dataset.sources import MAX_CELL_CHARS

    frame = make_sentiment_frame(40)
    frame.loc[3, "text"] = "a" * (MAX_CELL_CHARS + 1)
    source = tmp_path / "long.csv"
    frame.to_csv(source, index=False)
    code, _, err = run_cli(capsys, "train", "--data", str(source), "--model", str(tiny_bert),
                           "--output", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(code, err, str(source), "row 4", "over the limit")
    code, _, err = run_cli(capsys, "predict", str(tiny_run_dir), "--input", str(source),
                           "--output", str(tmp_path / "scored.jsonl"), "--quiet")
    assert_one_line_error(code, err, str(source), "row 4", "over the limit")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.csv"]


def test_texts_that_are_not_text_or_only_invisible_are_answered_or_refused_clearly(
        capsys, tiny_run_dir):
    import sentitune

    not_utf8 = b"caf\xe9 \xff good".decode("utf-8", "surrogateescape")  # as argv holds it
    code, out, err = run_cli(capsys, "predict", str(tiny_run_dir), not_utf8, "\ud800 fine")
    assert code == 0, err
    assert len(out.splitlines()) == 2 and "Traceback" not in err
    assert len(sentitune.predict(tiny_run_dir, ["\ud800"])) == 1
    # Only invisible characters: answered as a blank text is, one record marked "empty text".
    code, out, err = run_cli(capsys, "predict", str(tiny_run_dir), "\u200b\u200b \u2060")
    assert code == 0 and "Traceback" not in err
    assert json.loads(out)["error"] == "empty text"
    blank, invisible = sentitune.predict(tiny_run_dir, ["fine", ""]), sentitune.predict(
        tiny_run_dir, ["fine", "\u200b"])
    assert len(blank) == len(invisible) == 2 and blank[0] == invisible[0]
    assert blank[1]["error"] == invisible[1]["error"] == "empty text"


def test_a_killed_exports_partial_folder_goes_with_the_next_export(capsys, tmp_path,
                                                                   tiny_run_dir):
    pytest.importorskip("onnxruntime")
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    shutil.rmtree(run / "onnx", ignore_errors=True)
    kill_when(sentitune_process("export", str(run)),
              lambda: any(run.glob(".onnx.*.partial")), "a partial export")
    leftovers = list(run.glob(".onnx.*.partial"))
    assert len(leftovers) == 1 and not (run / "onnx").exists()
    code, _, err = run_cli(capsys, "export", str(run))
    assert code == 0, err
    assert not leftovers[0].exists() and (run / "onnx" / "model.onnx").is_file()
    assert not list(run.glob(".onnx.*"))


# --- predict --output killed midway -------------------------------------------------------


def test_a_killed_predict_leaves_a_recognised_partial_file_that_the_next_run_removes(
        capsys, tmp_path, tiny_run_dir):
    source = tmp_path / "many.csv"
    make_sentiment_frame(8_000).to_csv(source, index=False)
    target = tmp_path / "scored.jsonl"
    kill_when(sentitune_process("predict", str(tiny_run_dir), "--input", str(source),
                                "--output", str(target), "--quiet"),
              lambda: any(tmp_path.glob(".scored.jsonl.[0-9]*.partial")), "a partial output")
    # The output and its errors file, each under a partial name until complete.
    leftovers = sorted(tmp_path.glob(".scored.jsonl*.partial"))
    assert sorted("errors" in p.name for p in leftovers) == [False, True]
    assert not target.exists()  # never a half file under its name
    code, out, err = run_cli(capsys, "predict", str(tiny_run_dir), "--input", str(source),
                             "--output", str(target), "--quiet")
    assert code == 0, err
    errors = tmp_path / "scored.jsonl.errors.jsonl"
    assert not any(p.exists() for p in leftovers)
    assert sorted(tmp_path.iterdir()) == sorted([source, target, errors])
    assert len(target.read_text().splitlines()) == 8_000


# --- fair serving ---------------------------------------------------------------------------


def test_a_token_budget_bounds_every_forward_pass():
    lengths = [5, 128, 7, 64, 128, 3, 90, 128, 12, 40] * 5
    batches = list(length_batches(lengths, 32, max_tokens=512))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 512
    # A text longer than the budget still goes, alone.
    assert [len(b) for b in length_batches([600, 10], 32, max_tokens=512)] == [1, 1]


FAIR = ServeSettings(api_key=None, max_batch_size=2, max_batch_tokens=32)


def _model_calls(metrics_text: str) -> int:
    return int(float(next(line.split()[1] for line in metrics_text.splitlines()
                          if line.startswith("sentitune_batch_size_count"))))


def test_a_big_batch_is_served_in_pieces_while_single_texts_pass(classifier):
    long_texts = [f"review {i}: " + "a quietly moving film, " * 90 for i in range(256)]

    async def scenario(url: str) -> tuple[bool, list[str]]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            batch = asyncio.create_task(client.post("/predict/batch",
                                                    json={"texts": long_texts}))
            while _model_calls((await client.get("/metrics")).text) < 1:
                await asyncio.sleep(0.002)  # until the model is working on the batch
            single = await client.post("/predict", json={"text": "Loved it."})
            assert single.status_code == 200
            batch_still_running = not batch.done()
            answer = await batch
            assert answer.status_code == 200
            return batch_still_running, [p["text"] for p in answer.json()["predictions"]]

    with serve_in_thread(create_app(classifier, FAIR)) as url:
        batch_still_running, texts = asyncio.run(scenario(url))
        calls = httpx.get(f"{url}/metrics").text
    assert batch_still_running  # the single text did not wait for all 256
    assert texts == long_texts  # input order, every text once
    # Every model call held at most max_batch_size texts.
    buckets = dict(line.rsplit(" ", 1) for line in calls.splitlines()
                   if line.startswith("sentitune_batch_size_bucket"))
    assert buckets['sentitune_batch_size_bucket{le="2"}'] == buckets[
        'sentitune_batch_size_bucket{le="+Inf"}']


def test_requests_that_wait_too_long_get_503_with_retry_after(classifier):
    settings = ServeSettings(api_key=None, max_batch_size=1, max_queue_ms=100)

    async def burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60,
                                     limits=httpx.Limits(max_connections=200)) as client:
            return await asyncio.gather(*(
                client.post("/predict", json={"text": f"a long wait {i} " * 50})
                for i in range(200)))

    with serve_in_thread(create_app(classifier, settings)) as url:
        responses = asyncio.run(burst(url))
        assert httpx.get(f"{url}/ready").status_code == 200  # still serving
    statuses = {r.status_code for r in responses}
    assert statuses == {200, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) >= 1
            assert "overloaded" in response.json()["detail"]
