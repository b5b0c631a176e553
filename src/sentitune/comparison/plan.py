"""Planning and training a comparison: one config per model, method and seed from one
base config, each trained in a fresh process."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from sentitune import console
from sentitune.config import LORA_SETTINGS, METHODS, RunConfig, TrainingConfig, validate
from sentitune.errors import SentituneError
from sentitune.model import model_label


def _items(value: str | Sequence) -> list[str]:
    """`--methods full,lora` and `methods=("full", "lora")` alike, as strings."""
    return (value.split(",") if isinstance(value, str) else [str(v) for v in value])


def parse_methods(value: str | Sequence[str], at_least: int = 2) -> tuple[str, ...]:
    text = ",".join(_items(value))
    methods = tuple(m.strip() for m in _items(value) if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SentituneError(f"--methods: unknown method(s) {', '.join(unknown)}; use "
                             f"{','.join(METHODS)}")
    if len(set(methods)) < at_least or len(set(methods)) != len(methods):
        raise SentituneError(f"--methods needs two different methods, e.g. {','.join(METHODS)}; "
                             f"got '{text}'" if at_least > 1 else
                             f"--methods needs different methods, e.g. {','.join(METHODS)}; "
                             f"got '{text}'")
    return methods


def parse_models(value: str | Sequence[str]) -> tuple[str, ...]:
    """`--models distilbert,roberta,path/to/model`: aliases, hub ids or local folders."""
    text = ",".join(_items(value))
    models = tuple(m.strip() for m in _items(value) if m.strip())
    labels = [model_label(m) for m in models]
    if not models or len(set(labels)) != len(labels):
        raise SentituneError(f"--models needs models named once each (aliases, hub ids or "
                             f"folders with different names), e.g. distilbert,roberta; "
                             f"got '{text}'")
    return models


def parse_seeds(value: str | Sequence[int]) -> tuple[int, ...]:
    text = ",".join(_items(value))
    try:
        seeds = tuple(int(s) for s in _items(value) if s.strip())
    except ValueError:
        raise SentituneError(f"--seeds must be comma-separated integers, e.g. 42,43,44; "
                             f"got '{text}'") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SentituneError(f"--seeds needs at least one seed and no repeats; got '{text}'")
    return seeds


def slug(model: str) -> str:
    return model_label(model).replace("/", "--")


def plan_runs(base: RunConfig, methods: Sequence[str], seeds: Sequence[int],
              learning_rates: Mapping[str, float],
              models: Sequence[str] | None = None) -> dict[str, RunConfig]:
    """One config per model, method and seed, named like `lora-seed42` (one model) or
    `roberta-lora-seed42`; nothing else changes.

    Ordered seed by seed (full-seed42, lora-seed42, full-seed43, ...): when other work
    loads the machine for a while, it slows every model and method alike, not all runs of one.
    """
    defaults = TrainingConfig()
    models = list(models or [base.model.model])
    plans = {}
    for seed in seeds:
        for model in models:
            for method in methods:
                training = dataclasses.replace(base.training, method=method, seed=seed,
                                               learning_rate=learning_rates[method])
                if method != "lora":  # LoRA fields mean nothing here; defaults avoid a warning
                    training = dataclasses.replace(
                        training, **{name: getattr(defaults, name) for name in LORA_SETTINGS})
                config = dataclasses.replace(base, training=training,
                                             model=dataclasses.replace(base.model, model=model))
                name = f"{method}-seed{seed}"
                plans[name if len(models) == 1 else f"{slug(model)}-{name}"] = validate(config)
    return plans


def train_isolated(config: RunConfig, run_dir: Path, overwrite: bool) -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # a fresh interpreter, nothing inherited
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_train_metrics, config, run_dir, overwrite,
                           console.spelling_is_cli()).result()


def _train_metrics(config: RunConfig, run_dir: Path, overwrite: bool, cli: bool) -> dict:
    import contextlib
    import warnings

    from sentitune.training import train

    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecations, as the CLI
    with console.cli_spelling() if cli else contextlib.nullcontext():  # as the parent spoke
        return train(config, run_dir, overwrite=overwrite, progress=False).metrics


def say(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)
