"""The run directory: the contract between training and every later stage.

    RUN_DIR/
      model/          save_pretrained: safetensors, config (label names), tokenizer
      adapter/        LoRA runs only: the peft adapter with the trained head
      onnx/           after `sentitune export`: model.onnx (and model.int8.onnx)
      config.yaml     resolved RunConfig + facts: data fingerprint, rows, library versions
      labels.json     {"task": ..., "labels": [...]}
      decision.json   how probabilities become decisions (sentitune.decision.Decision)
      history.csv     per epoch: train loss, validation loss, accuracy, F1
      metrics.json    validation metrics, best epoch, runtime, parameters, memory
      curves.png      loss and accuracy per epoch
      README.md       model card (Hub metadata first)
      tensorboard/    with `--report-to tensorboard`: the event files
      tracking.json   with `--report-to`: where the trackers logged (MLflow run and model)

Every stage reads and writes a run through `Run`; no other module parses these files.
Each fact is stored once: the task and labels in labels.json, the method and every
setting in config.yaml, measurements in metrics.json.

A run is built in `RUN_DIR.partial/` and renamed into place only when complete, so a
failed run never leaves a directory that looks finished. Checkpoints for `--resume`
live in `RUN_DIR.partial/checkpoints/` until then. While a run is being built,
`RUN_DIR.lock` names its writer (pid, host, start time): a second writer is refused, and
the lock of a writer that died is taken over.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from sentitune import console, files
from sentitune.config import (
    SECTIONS,
    TASKS,
    RunConfig,
    config_yaml,
    from_dict,
    plain,
    read_yaml,
)
from sentitune.decision import Decision
from sentitune.errors import SentituneError

REQUIRED = ("labels.json", "config.yaml", "metrics.json")
ONNX_DIR = "onnx"  # written by `sentitune export`, beside model/
ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
QUANTIZE_CHOICES = ("int8",)
TENSORBOARD_DIR = "tensorboard"
TRACKING_FILE = "tracking.json"
# The small files that describe a run (not its weights), e.g. for an experiment tracker.
RECORD_FILES = ("config.yaml", "labels.json", "decision.json", "metrics.json", "history.csv",
                "curves.png", "README.md")
# In an unfinished run's checkpoints/, when `sentitune train` did not start it: the command
# that resumes it (publishing removes checkpoints/ and it).
RESUME_COMMAND = "resume-command.txt"
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy", "val_f1", "val_f1_macro")


class Run:
    """A run directory, read and written through typed accessors.

    `Run.open(path)` checks a finished run; `Run.stage(path)` starts one in
    `path.partial/`, which `publish()` renames into place. Readers are cached: a Run is a
    snapshot, open it again to see later changes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # ------------------------------------------------------------- opening

    @staticmethod
    def looks_like_run(path: str | Path) -> bool:
        """Whether `path` names a run directory (it has labels.json); never raises, so any
        string, a long text included, can be asked."""
        try:
            return (Path(path) / "labels.json").is_file()
        except OSError:  # a long text is no path
            return False

    @staticmethod
    def staging_path(output: str | Path) -> Path:
        """Where the run for `output` is built until it is complete."""
        output = Path(output)
        return output.with_name(output.name + ".partial")

    @classmethod
    def remove(cls, output: str | Path) -> None:
        """Delete the run at `output` and its staging folder, whatever state they are in."""
        shutil.rmtree(output, ignore_errors=True)
        shutil.rmtree(cls.staging_path(output), ignore_errors=True)

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """A finished run; a SentituneError says what is missing or damaged."""
        path = Path(path)
        if path.name.endswith(".partial"):
            hint = path / "checkpoints" / RESUME_COMMAND  # by the verb that started it
            command = (hint.read_text(encoding="utf-8").strip() if hint.is_file() else
                       "sentitune train --resume --output "
                       f"{path.with_name(path.name.removesuffix('.partial'))}")
            raise SentituneError(f"{path} is an unfinished run; resume it with `{command}`")
        if not path.is_dir():
            raise SentituneError(f"{path} is not a directory; give a run made by "
                                 "`sentitune train`")
        missing = [name for name in REQUIRED if not (path / name).exists()]
        if missing or not ((path / "model").is_dir() or (path / "adapter").is_dir()):
            raise SentituneError(
                f"{path} is not a sentitune run: missing {', '.join(missing) or 'model/'}; "
                "train one with `sentitune train`")
        _refuse_links_out(path)
        run = cls(path)
        # A damaged file fails here, once, with one line; not mid-way in a later stage.
        run.config, run.labels, run.decision  # noqa: B018
        return run

    @classmethod
    def stage(cls, output: str | Path, *, resume: bool = False, overwrite: bool = False) -> Run:
        """An empty (or, with `resume`, the interrupted) staging run for `output`."""
        output = Path(output)
        staging = cls.staging_path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        lock = RunLock.acquire(output.with_name(output.name + ".lock"))
        try:
            if output.exists() and not overwrite:  # checked under the lock: no race
                raise SentituneError(f"{output} already exists; choose another --output or "
                                     "--overwrite")
            if staging.exists() and not resume:
                shutil.rmtree(staging)
            staging.mkdir(parents=True, exist_ok=True)
        except BaseException:
            lock.release()
            raise
        run = cls(staging)
        run.lock = lock
        return run

    lock: RunLock | None = None  # held by a staging run until published or released

    def release(self) -> None:
        """Give up this staging run's lock (publish does it too); the staging dir stays,
        so the run can be resumed."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def publish(self) -> Run:
        """Swap this finished staging run into place; returns the published run."""
        if not self.path.name.endswith(".partial"):
            raise ValueError(f"{self.path} is not a staging directory")
        target = self.path.with_name(self.path.name.removesuffix(".partial"))
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        files.replace_dir(self.path, target)
        self.release()
        return Run(target)

    # ------------------------------------------------------------- reading

    def _json(self, name: str) -> Any:
        path = self.path / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SentituneError(f"{path} is missing; retrain the run") from None
        except (UnicodeDecodeError, ValueError):
            raise SentituneError(f"{path} is damaged (not JSON); restore it or retrain the "
                                 "run") from None

    @property
    def has_config(self) -> bool:
        return (self.path / "config.yaml").is_file()

    @cached_property
    def _config_file(self) -> dict:
        path = self.path / "config.yaml"
        raw = read_yaml(path)
        if not any(section in raw for section in SECTIONS):  # defaults would be a guess
            raise SentituneError(f"{path} holds no settings (no {', '.join(SECTIONS)} "
                                 "section); restore it or retrain the run")
        return raw

    @cached_property
    def config(self) -> RunConfig:
        """The resolved config the run was trained with."""
        return from_dict(self._config_file, str(self.path / "config.yaml"))

    @property
    def facts(self) -> dict:
        """What training recorded beside the config: data fingerprint, rows, data notes,
        library versions."""
        return {k: v for k, v in self._config_file.items() if k not in SECTIONS}

    @property
    def data_notes(self) -> dict:
        """What reading the data noted (its folder, a guessed text column, where validation
        came from, overlaps); empty for a run that kept none."""
        return self.facts.get("data_notes") or {}

    @cached_property
    def _labels_file(self) -> dict:
        path = self.path / "labels.json"
        payload = self._json("labels.json")
        labels = payload.get("labels") if isinstance(payload, dict) else None
        if not (isinstance(labels, list) and payload.get("task") in TASKS and len(labels) >= 2
                and all(isinstance(name, str) and name for name in labels)
                and len(set(labels)) == len(labels)):
            raise SentituneError(f"{path} is damaged (it needs a task of {', '.join(TASKS)} "
                                 "and two or more distinct label names); restore it or "
                                 "retrain the run")
        outputs = self._model_outputs()
        if outputs is not None and outputs != len(labels):
            raise SentituneError(f"{path} names {len(labels)} labels but the model has "
                                 f"{outputs} outputs; restore labels.json or retrain the run")
        return payload

    def _model_outputs(self) -> int | None:
        """How many labels the saved model scores (from model/config.json), if it says."""
        try:
            saved = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None  # an adapter-only run; a damaged model fails when it loads
        id2label = saved.get("id2label") if isinstance(saved, dict) else None
        return len(id2label) if isinstance(id2label, dict) else None

    @property
    def task(self) -> str:
        return self._labels_file["task"]

    @property
    def labels(self) -> list[str]:
        return list(self._labels_file["labels"])

    @cached_property
    def decision(self) -> Decision:
        path = self.path / "decision.json"
        if not path.exists():
            return Decision()
        payload = self._json("decision.json")
        try:
            decision = Decision(**payload) if isinstance(payload, dict) else None
        except TypeError:
            decision = None
        problem = ("not an object of decision fields" if decision is None
                   else decision_problem(decision, len(self.labels)))
        if problem:
            raise SentituneError(f"{path} is damaged ({problem}); restore it or retrain "
                                 "the run")
        return decision

    @cached_property
    def metrics(self) -> dict:
        return self._json("metrics.json")

    def history(self) -> list[dict]:
        with (self.path / "history.csv").open(newline="") as handle:
            return [{k: float(v) if v not in ("", None) else None for k, v in row.items()}
                    for row in csv.DictReader(handle)]

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def model_type(self) -> str:
        """The transformers architecture (config.json's model_type) of model/, else of
        adapter/; "unknown" when neither says."""
        folder = self.model_dir if self.model_dir.is_dir() else self.adapter_dir
        if not (folder / "config.json").is_file():
            return "unknown"
        return json.loads((folder / "config.json").read_text()).get("model_type", "unknown")

    @property
    def onnx_dir(self) -> Path:
        return self.path / ONNX_DIR

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD_DIR

    def record_files(self) -> list[Path]:
        """The run's describing files that exist (config, labels, metrics, plots, card)."""
        return [self.path / name for name in RECORD_FILES if (self.path / name).is_file()]

    def copy_to(self, target: str | Path) -> Run:
        """A copy at `target` of what scoring needs (model/, adapter/) and the record files:
        what a packaged model (e.g. MLflow's) carries. No checkpoints, tracker logs, ONNX
        exports or evaluations."""
        target = Path(target)
        target.mkdir(parents=True)
        for folder in (self.model_dir, self.adapter_dir):
            if folder.is_dir():
                shutil.copytree(folder, target / folder.name)
        for path in self.record_files():
            shutil.copy2(path, target / path.name)
        return Run(target)

    def onnx_path(self, *, int8: bool = False) -> Path:
        """The exported graph; raises if `sentitune export` has not made it."""
        path = self.onnx_dir / (INT8_NAME if int8 else ONNX_NAME)
        if not path.is_file():
            flag = " --quantize int8" if int8 else ""
            raise SentituneError(f"{path} does not exist; run `sentitune export "
                                 f"{self.path}{flag}` first")
        return path

    @property
    def max_length(self) -> int:
        return self.config.data.max_length

    def preprocess(self, texts: list[str]) -> list[str]:
        """The run's own text cleaning, exactly as training applied it."""
        from sentitune.dataset.splits import clean_text

        strip_html = self.config.data.clean_html
        return [clean_text(text, strip_html) for text in texts]

    def rebuilt_splits(self):
        """The exact training and validation rows of the run, rebuilt from its config and
        checked against the saved data fingerprint (a `Splits`); read once per Run."""
        from sentitune.dataset.splits import load_splits

        if "_splits" in self.__dict__:
            return self.__dict__["_splits"]
        from sentitune.dataset.sources import data_dir

        config = self.config
        # The folder its data was read from, when $SENTITUNE_DATA_DIR no longer says.
        remembered = self.data_notes.get("data_dir")
        root = Path(remembered) if remembered and data_dir() is None else None
        splits = load_splits(config.data, config.training.seed, root)
        saved = self.facts.get("data_fingerprint")
        if saved and splits.fingerprint() != saved:
            raise SentituneError(
                f"{config.data.dataset} changed since {self.path} was trained (the data "
                "fingerprint differs), so its validation split cannot be rebuilt; restore the "
                "data or retrain")
        self.__dict__["_splits"] = splits
        return splits

    # ------------------------------------------------------------- writing

    def write_config(self, config: RunConfig, facts: dict[str, Any]) -> None:
        files.write_text(self.path / "config.yaml", config_yaml(config, facts))
        self.__dict__.pop("_config_file", None)
        self.__dict__.pop("config", None)

    def write_labels(self, task: str, labels: list[str]) -> None:
        files.write_json(self.path / "labels.json", {"task": task, "labels": labels})
        self.__dict__.pop("_labels_file", None)

    def write_decision(self, decision: Decision) -> None:
        files.write_json(self.path / "decision.json", asdict(decision))
        self.__dict__["decision"] = decision

    def update_decision(self, **changes) -> Decision:
        """Change some of the run's decision fields (review threshold, ...); the rest stays."""
        decision = replace(self.decision, **changes)
        self.write_decision(decision)
        return decision

    def write_metrics(self, metrics: dict) -> None:
        files.write_json(self.path / "metrics.json", metrics)
        self.__dict__["metrics"] = metrics

    def write_history(self, history: list[dict]) -> None:
        with files.atomic_path(self.path / "history.csv") as partial, \
                partial.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)

    def write_card(self, text: str) -> None:
        files.write_text(self.path / "README.md", text)

    def write_tracking(self, record: dict) -> None:
        files.write_json(self.path / TRACKING_FILE, record)

    @property
    def tracking(self) -> dict:
        """Where `--report-to` logged the run (empty when it logged nowhere)."""
        return self._json(TRACKING_FILE) if (self.path / TRACKING_FILE).exists() else {}


# Settings a resumed run may change: they do not touch what the weights see.
RESUMABLE_CHANGES = ("checkpoint_every", "report_to", "long_text", "stride")


def check_resume(output: str | Path, config: RunConfig) -> None:
    """Refuse to resume `output` with other settings than its interrupted run started with:
    config.yaml would describe settings its weights never saw. `epochs` may change, to
    extend or shorten a run, with a warning."""
    output = Path(output)
    staging = output.with_name(output.name + ".partial")
    if not (staging / "config.yaml").is_file():
        return  # nothing to resume: training starts afresh
    before, now = _flat_settings(Run(staging).config), _flat_settings(config)
    refuse_other_settings(staging, before, {name: value for name, value in now.items()
                                            if name not in (*RESUMABLE_CHANGES, "epochs")},
                          "settings", "train")
    if now["epochs"] != before["epochs"]:
        console.warn(f"resuming with {console.option('epochs', now['epochs'])} (was "
                     f"{before['epochs']:g}): the learning rate schedule changes from here "
                     "on, so the weights will differ from an uninterrupted run's")


def refuse_other_settings(staging: Path, before: dict[str, Any], now: dict[str, Any],
                          kind: str, verb: str) -> None:
    """One error naming every setting in `now` that differs from `before`, the settings the
    interrupted run at `staging` started with (names missing there are not compared)."""
    changed = [f"{console.flag(name)} {_shown(value)} (was {_shown(before[name])})"
               for name, value in now.items() if name in before and value != before[name]]
    if changed:
        raise SentituneError(f"--resume with other {kind} than {staging} started with: "
                             f"{', '.join(changed)}; resume with its settings, or {verb} "
                             "afresh without --resume (--overwrite if needed)")


def _flat_settings(config: RunConfig) -> dict[str, Any]:
    return {name: value for section in plain(config.to_dict()).values()
            for name, value in section.items()}


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def decision_problem(decision: Decision, n_labels: int) -> str | None:
    """What makes a decision read from a file unusable, or None."""
    if not (_number(decision.review_threshold) and 0 <= decision.review_threshold <= 1):
        return f"review_threshold must be a number from 0 to 1, not {decision.review_threshold!r}"
    if not (_number(decision.temperature) and decision.temperature > 0):
        return f"temperature must be a positive number, not {decision.temperature!r}"
    if not isinstance(decision.review_truncated, bool):
        return f"review_truncated must be true or false, not {decision.review_truncated!r}"
    cuts = decision.label_thresholds
    if cuts is not None and not (isinstance(cuts, list) and len(cuts) == n_labels
                                 and all(_number(c) and 0 <= c <= 1 for c in cuts)):
        return f"label_thresholds must be {n_labels} numbers from 0 to 1"
    return None


def _refuse_links_out(path: Path) -> None:
    """A run whose files are links to elsewhere would load (or overwrite) what is not the
    run's: refuse any symbolic link inside it that leads out of the run directory."""
    root = path.resolve()
    for folder, subfolders, names in os.walk(path):
        for name in subfolders + names:
            entry = Path(folder) / name
            if entry.is_symlink() and not entry.resolve().is_relative_to(root):
                raise SentituneError(f"{entry} is a link to {os.readlink(entry)}, outside the "
                                     "run; copy the file into the run instead")


class RunLock:
    """`OUT.lock`: one writer per run directory.

    Holds the writer's pid, host and start time (and the process's own start time, so a
    reused pid is not mistaken for the writer). Created exclusively (O_EXCL), so of two
    writers starting together exactly one wins. A lock whose writer is gone (same host, pid
    dead or reused) is stale: it is taken over with a warning, by one of the writers that
    find it so (`_takeover_guard`).
    """

    def __init__(self, path: Path, holder: dict) -> None:
        self.path = path
        self.holder = holder

    @classmethod
    def acquire(cls, path: Path) -> RunLock:
        holder = _this_process()
        for _ in range(4):  # tries again only after a stale lock went or a lock was released
            try:
                # Written whole, then linked into place: link() fails if the lock exists,
                # and nobody ever reads a lock file half-written.
                content = path.with_name(f".{path.name}.{os.getpid()}{files.PARTIAL_SUFFIX}")
                content.write_text(json.dumps(holder), encoding="utf-8")
                try:
                    os.link(content, path)
                finally:
                    content.unlink(missing_ok=True)
            except FileExistsError:
                other = _read_lock(path)
                if other == {}:
                    continue  # released meanwhile
                if other is not None and not _is_stale(other):
                    raise _held_by(path, other) from None
                with _takeover_guard(path.parent):
                    # Of several writers that found it stale, the first removes it; the
                    # others find another lock (or none) here and look again.
                    if _read_lock(path) != other:
                        continue
                    console.warn(f"taking over the lock {path} of a writer that is gone "
                                 f"({_describe(other)}); its partial run is kept for "
                                 f"{console.option('resume', True)}")
                    path.unlink(missing_ok=True)
                continue
            return cls(path, holder)
        raise SentituneError(f"{path} was taken by another writer just now; try again")

    def release(self) -> None:
        if _read_lock(self.path) == self.holder:  # never remove a lock someone took over
            self.path.unlink(missing_ok=True)


def _held_by(path: Path, holder: dict) -> SentituneError:
    return SentituneError(
        f"{path.with_suffix('')} is being written by pid {holder['pid']} on {holder['host']} "
        f"since {holder['started']}; wait for it to finish or choose another --output")


@contextlib.contextmanager
def _takeover_guard(folder: Path) -> Iterator[None]:
    """One process at a time may remove a stale lock in `folder` (an advisory lock on the
    folder itself, so nothing is left behind): removing is only safe if the lock removed is
    the stale one that was read, not one a faster writer has just taken."""
    import fcntl

    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the flock


def _process_started(pid: int) -> float | None:
    import psutil

    try:
        return round(psutil.Process(pid).create_time(), 2)
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:  # alive, but not ours to inspect
        return -1.0


def _this_process() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "process_started": _process_started(os.getpid())}


def _read_lock(path: Path) -> dict | None:
    """The lock's holder; None for a damaged lock file, {} for none."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}  # released meanwhile: not stale, not held; the retry settles it
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return holder if isinstance(holder, dict) and {"pid", "host", "started"} <= holder.keys() \
        else None


def _is_stale(holder: dict) -> bool:
    if holder["host"] != socket.gethostname():
        return False  # cannot see other hosts' processes: assume it is alive
    started = _process_started(int(holder["pid"]))
    if started is None:
        return True
    return started != -1.0 and started != holder.get("process_started", started)


def _describe(holder: dict | None) -> str:
    if holder is None:
        return "unreadable lock file"
    return f"pid {holder['pid']} on {holder['host']} since {holder['started']}"


def versions() -> dict[str, str]:
    import platform

    import torch
    import transformers

    from sentitune import __version__

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "transformers": str(transformers.__version__),
        "sentitune": __version__,
    }
