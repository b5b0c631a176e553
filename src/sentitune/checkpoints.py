"""Crash-safe training: checkpoints bounded in time, exact resume, totals over sessions.

A run's checkpoints live in `RUN_DIR.partial/checkpoints/` (see `sentitune.run`). Besides
the Trainer's one per epoch, `Interval` asks for one every N optimizer steps or N
minutes (`checkpoint_every`), so a crash loses at most that much work; the Trainer's own
resume restores weights, optimizer, scheduler and RNG states and skips the batches already
consumed (length-grouped batches come in an order fixed by seed and epoch,
`EpochSeededLengthSampler`), so a resumed run ends with the weights an uninterrupted one
would have.

Every checkpoint also records the sessions (processes) that trained up to it
(`sessions.json`: runtime and peak memory of each), so a resumed run reports its totals,
not only its last session's. Work done after the last checkpoint of a killed session is
lost and not counted.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from sentitune import console, distributed, files

SESSIONS_FILE = "sessions.json"
_STATE_FILE = "trainer_state.json"
# What a resume needs besides the state: weights (full or LoRA) and the optimizer's and
# scheduler's states. A kill while the Trainer writes, or while `publish` removes the
# checkpoints, can leave a state file without them.
_WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json",
                  "adapter_model.safetensors")
_NEEDED_FILES = ("optimizer.pt", "scheduler.pt")


class Interval(TrainerCallback):
    """Asks the Trainer for a checkpoint every `steps` optimizer steps or `seconds`."""

    def __init__(self, steps: int | None, seconds: float | None) -> None:
        self.steps = steps
        self.seconds = seconds
        self._last_save = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        due = (self.steps is not None and state.global_step % self.steps == 0) or (
            self.seconds is not None and time.monotonic() - self._last_save >= self.seconds)
        if self.seconds is not None:
            # Clocks differ between processes: rank 0's decides, or one rank would save
            # while the others went on, and they would wait on each other for ever.
            due = distributed.on_main(lambda: due, "timing a checkpoint")
        if due:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self._last_save = time.monotonic()


class EpochSeededLengthSampler(LengthGroupedSampler):
    """Batches of similar length in an order drawn from (seed, epoch) alone.

    The Trainer's own length-grouped sampler draws from the global RNG when an epoch's
    first batch is asked for: a run resumed mid-epoch draws another order than the one the
    interrupted run trained on (and then skips batches of the wrong order). The Trainer
    and accelerate call `set_epoch` before every epoch, resumed or not.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + int(epoch))


class SessionLog(TrainerCallback):
    """Writes every session's runtime and peak memory into each checkpoint."""

    def __init__(self, earlier: list[dict], peak_memory_mb: Callable[[], float]) -> None:
        self.earlier = earlier
        self._peak_memory_mb = peak_memory_mb
        self._started = time.perf_counter()

    def sessions(self) -> list[dict]:
        """The earlier sessions and this one so far."""
        return [*self.earlier, {"runtime_s": round(time.perf_counter() - self._started, 3),
                                "peak_memory_mb": round(self._peak_memory_mb(), 1)}]

    def on_train_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            files.write_json(folder / SESSIONS_FILE, self.sessions())


def _complete(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / _STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (any((checkpoint / name).is_file() for name in _WEIGHTS_FILES)
            and all((checkpoint / name).is_file() for name in _NEEDED_FILES))


def resumable(folder: Path) -> Path | None:
    """The newest complete checkpoint in `folder`; newer ones a crash left half-written or
    half-removed are removed (the Trainer would pick them and fail)."""
    found = sorted((p for p in folder.glob("checkpoint-*") if p.name[11:].isdigit()),
                   key=lambda p: int(p.name[11:]), reverse=True)
    for checkpoint in found:
        if _complete(checkpoint):
            return checkpoint
        console.warn(f"removing {checkpoint.name}: it is incomplete (the process was killed "
                     "while writing or removing it)")
        shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def earlier_sessions(checkpoint: Path | None) -> list[dict]:
    """The sessions that trained up to `checkpoint` (one of unknown cost when a crash came
    between the checkpoint and its record)."""
    if checkpoint is None:
        return []
    try:
        sessions = json.loads((checkpoint / SESSIONS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [{"runtime_s": None, "peak_memory_mb": None}]
    return sessions if isinstance(sessions, list) else []


def totals(sessions: list[dict], samples: float) -> dict:
    """Runtime summed and peak memory maxed over sessions; samples/s over the summed time."""
    runtime = sum(s["runtime_s"] or 0.0 for s in sessions)
    peaks = [s["peak_memory_mb"] for s in sessions if s["peak_memory_mb"] is not None]
    return {
        "train_runtime_s": round(runtime, 3),
        "train_samples_per_s": round(samples / runtime, 3) if runtime else 0.0,
        "peak_memory_mb": round(max(peaks, default=0.0), 1),
        "sessions": len(sessions),
    }
