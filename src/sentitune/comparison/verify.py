"""Verifying a comparison: the runs may differ only in model, method, the method's own
settings and seed; everything else (data rows, recipe, library versions, device) matches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sentitune.config import LORA_SETTINGS, METHODS
from sentitune.errors import SentituneError
from sentitune.model import model_label
from sentitune.run import Run

# What may differ between compared runs: the model, the method and the settings that belong
# to the method. Everything else (data, batch size, schedule, ..., library versions, device)
# must match.
METHOD_SETTINGS = {"full": ("learning_rate",), "lora": ("learning_rate", *LORA_SETTINGS)}
# Where a run was logged changes nothing it learned.
NOT_COMPARED = {"report_to"}
PER_RUN = {"model", "method", "seed", *NOT_COMPARED,
           *(name for names in METHOD_SETTINGS.values() for name in names)}

@dataclass(frozen=True)
class ComparedRun:
    """What a finished run directory says about itself."""

    run: Run
    settings: dict  # flat: every config field plus device and library versions
    history: list[dict]

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def fingerprint(self) -> str:
        return self.run.facts.get("data_fingerprint", "")

    @property
    def metrics(self) -> dict:
        return self.run.metrics

    @property
    def method(self) -> str:
        return self.settings["method"]

    @property
    def seed(self) -> int:
        return self.settings["seed"]

    @property
    def model(self) -> str:
        return self.settings["model"]

    @property
    def variant(self) -> tuple[str, str]:
        return self.model, self.method


def read_run(path: Path) -> ComparedRun:
    run = Run.open(path)
    settings = {key: value for section in run.config.to_dict().values()
                for key, value in section.items()}
    versions = run.facts.get("versions") or {}
    settings |= {"device": run.metrics.get("device"), "torch": versions.get("torch"),
                 "transformers": versions.get("transformers")}
    history = [{k: v for k, v in row.items() if v is not None} for row in run.history()]
    return ComparedRun(run, settings, history)


def check_comparable(runs: Sequence[ComparedRun]) -> dict:
    """The settings all runs share; raise if they differ beyond model, method, its settings
    and seed.

    Also requires one task and label set, every model and method to have run on the same
    seeds, and each seed's runs to have seen exactly the same rows (the data fingerprints in
    config.yaml).
    """
    variants = by_variant(runs)
    if len(variants) < 2:
        model, method = runs[0].variant if runs else ("none", "none")
        raise SentituneError("compare needs runs of two methods or two models; got only "
                             f"--method {method} of {model_label(model)}")
    seen: dict[tuple[str, str, int], Path] = {}
    for run in runs:
        key = (*run.variant, run.seed)
        if key in seen:
            raise SentituneError(f"{seen[key]} and {run.path} are both {run.method} with seed "
                                 f"{run.seed} of {model_label(run.model)}; give each model, "
                                 "method and seed once")
        seen[key] = run.path
    first = runs[0]
    for run in runs[1:]:
        if (run.run.task, run.run.labels) != (first.run.task, first.run.labels):
            raise SentituneError(
                f"{first.path.name} ({first.run.task}: {', '.join(first.run.labels)}) and "
                f"{run.path.name} ({run.run.task}: {', '.join(run.run.labels)}) answer "
                "different questions; compare runs with one task and label set")
    shared = {key: value for key, value in first.settings.items() if key not in PER_RUN}
    for run in runs[1:]:
        for key in sorted(set(shared) | set(run.settings) - PER_RUN):
            if run.settings.get(key) != shared.get(key):
                raise SentituneError(
                    f"{first.path.name} and {run.path.name} differ in {key} "
                    f"({shared.get(key)!r} vs {run.settings.get(key)!r}); compared runs may "
                    "differ only in model, method, learning rate, LoRA settings and seed")
    for method, group in by_method(runs).items():
        for key in METHOD_SETTINGS[method]:
            values = {repr(run.settings.get(key)) for run in group}
            if len(values) > 1:
                raise SentituneError(f"the {method} runs differ in {key} ({', '.join(values)}); "
                                     f"use one {method} setting for every model and seed")
    names = variant_names(runs)
    seeds = {names[variant]: sorted(run.seed for run in group)
             for variant, group in variants.items()}
    if len({tuple(s) for s in seeds.values()}) > 1:
        listed = "; ".join(f"{m}: {', '.join(map(str, s))}" for m, s in seeds.items())
        raise SentituneError(f"{compared(runs)} ran on different seeds ({listed}); give every "
                             "one the same seeds")
    for seed in sorted({run.seed for run in runs}):
        prints = {run.fingerprint for run in runs if run.seed == seed}
        if len(prints) > 1:
            raise SentituneError(f"the seed-{seed} runs saw different rows (data fingerprints "
                                 f"{', '.join(sorted(prints))}); retrain them on the same data")
    return shared


def models_of(runs: Sequence[ComparedRun]) -> list[str]:
    return list(dict.fromkeys(run.model for run in runs))


def compared(runs: Sequence[ComparedRun]) -> str:
    if len(models_of(runs)) == 1:
        return "methods"
    return "models" if len(by_method(runs)) == 1 else "models and methods"


def by_method(runs: Sequence[ComparedRun]) -> dict[str, list[ComparedRun]]:
    present = {run.method for run in runs}
    return {m: [run for run in runs if run.method == m] for m in METHODS if m in present}


def by_variant(runs: Sequence[ComparedRun]) -> dict[tuple[str, str], list[ComparedRun]]:
    """Runs per (model, method): models in the order given, methods in METHODS order."""
    present = {run.variant for run in runs}
    return {(model, method): [run for run in runs if run.variant == (model, method)]
            for model in models_of(runs) for method in METHODS if (model, method) in present}


def variant_names(runs: Sequence[ComparedRun]) -> dict[tuple[str, str], str]:
    """`lora` when one model is compared, `roberta` when one method, else `roberta lora`."""
    variants = by_variant(runs)
    several_models = len({model for model, _ in variants}) > 1
    several_methods = len({method for _, method in variants}) > 1
    return {(model, method): " ".join(
        [model_label(model)] * several_models + [method] * (several_methods or not several_models))
        for model, method in variants}
