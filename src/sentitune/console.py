"""What sentitune says while it works: warnings, progress lines and one line per epoch.

- `warn(message)`: a `SentituneWarning`, shown as one `warning: ...` line (no file name,
  no source line) by the CLI and by Python alike; Python's filters still apply.
- `option(name, value)`: how a message names a setting. The CLI writes `--class-weights
  auto`; in Python the same warning says `class_weights='auto'`, the spelling its reader
  can use (`cli_spelling()` switches, for one command).
- `say(progress, message)`: a progress line on stderr, so stdout keeps only results.
- `EpochLines`: the Trainer callback behind `train`'s console: one line per epoch instead
  of the Trainer's raw log dicts and progress-bar escape codes.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any


class SentituneWarning(UserWarning):
    """Something the user should know that does not stop the command."""


_CLI = contextvars.ContextVar("sentitune_cli", default=False)
_format_warning = warnings.formatwarning


def _one_line(message, category, filename, lineno, line=None) -> str:
    if issubclass(category, SentituneWarning):
        return f"warning: {message}\n"
    return _format_warning(message, category, filename, lineno, line)


# Only sentitune's own category is reformatted; every other warning keeps Python's format.
warnings.formatwarning = _one_line


def warn(message: str) -> None:
    warnings.warn(message, SentituneWarning, stacklevel=2)


@contextlib.contextmanager
def cli_spelling() -> Iterator[None]:
    """Within: messages name settings as the CLI's flags."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def spelling_is_cli() -> bool:
    return _CLI.get()


def flag(name: str) -> str:
    """A setting's command-line flag: `--name-with-dashes` (the data section's `dataset` is
    `--data`)."""
    return "--data" if name == "dataset" else "--" + name.replace("_", "-")


def option(name: str, value: Any = None) -> str:
    """A setting as the reader would type it: `--name value` in the CLI, `name=value` in
    Python; without a value just its name (`--name`, `name`)."""
    if _CLI.get():
        spelled = flag(name)
        if value is None or value is True:
            return spelled
        return "--no-" + spelled[2:] if value is False else f"{spelled} {value}"
    return name if value is None else f"{name}={value!r}"


def say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def epoch_callback(metric: str):
    """A TrainerCallback printing one line per epoch (transformers loads on first use)."""
    from transformers import TrainerCallback

    class EpochLines(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()
            self.loss = None
            steps = state.max_steps / max(args.num_train_epochs, 1e-9)
            precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
            print(f"training {args.num_train_epochs:g} epochs of {steps:.0f} steps "
                  f"({precision}); one line per epoch", flush=True)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = logs["loss"]

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            metrics = metrics or {}
            shown = [f"train loss {self.loss:.4f}"] if self.loss is not None else []
            shown.append(f"validation loss {metrics.get('eval_loss', float('nan')):.4f}")
            for name in dict.fromkeys(("accuracy", metric)):
                if name != "loss" and f"eval_{name}" in metrics:
                    shown.append(f"{name} {metrics[f'eval_{name}']:.4f}")
            elapsed = time.perf_counter() - self.started
            print(f"epoch {state.epoch:.0f}/{args.num_train_epochs:g}: {', '.join(shown)} "
                  f"({elapsed:.0f} s)", flush=True)

        def on_train_end(self, args, state, control, **kwargs):
            if args.bf16 or args.fp16:  # the final numbers differ a little: say why
                print("the epoch lines were scored in mixed precision; the final metrics "
                      "are recomputed in fp32 with the fitted calibration, as `predict` "
                      "scores, so they differ slightly", flush=True)

    return EpochLines()
