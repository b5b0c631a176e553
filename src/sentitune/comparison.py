"""Models and methods side by side: the same recipe for each, measured and reported.

`compare` trains every model (each with its own tokenizer) and every method on every seed
from one base config (data, subset, tokenization rules, max length, batch size, warmup,
epochs, schedule, evaluation) in which only the model, the method, its learning rate and
the LoRA fields change. `compare_runs` then verifies exactly that from the saved run
directories (the same check guards runs trained elsewhere), measures what training does
not (checkpoint size, inference speed with torch and, where exported, ONNX) and writes
compare.json, compare.md and compare.png.

Each run trains in a fresh process, one after another: a run's peak memory and speed
are then not coloured by the run before it (allocator caches, loaded libraries, warmed
kernels), and runs never compete with each other for the CPU or GPU.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt  # sentitune.plots selects the file-only Agg backend
import numpy as np

from sentitune import console, files
from sentitune.config import (
    DEFAULT_LEARNING_RATES,
    LORA_SETTINGS,
    METHODS,
    RunConfig,
    TrainingConfig,
    make_config,
    plain,
    validate,
)
from sentitune.errors import SentituneError
from sentitune.metrics import learning_problem
from sentitune.model import check_classifier_model, model_label
from sentitune.plots import save_figure
from sentitune.run import INT8_NAME, ONNX_NAME, Run

# What may differ between compared runs: the model, the method and the settings that belong
# to the method. Everything else (data, batch size, schedule, ..., library versions, device)
# must match.
METHOD_SETTINGS = {"full": ("learning_rate",), "lora": ("learning_rate", *LORA_SETTINGS)}
# Where a run was logged changes nothing it learned.
NOT_COMPARED = {"report_to"}
PER_RUN = {"model", "method", "seed", *NOT_COMPARED,
           *(name for names in METHOD_SETTINGS.values() for name in names)}
LATENCY_TEXTS = 64
LATENCY_BATCH_SIZES = (1, 32)
LATENCY_REPEATS = 3
ONNX_BACKENDS = ("onnx", "onnx-int8")  # timed besides torch for runs exported to them
LABELS = {"full": "full fine-tuning", "lora": "LoRA"}
COLORS = {"full": "tab:blue", "lora": "tab:orange"}


@dataclass(frozen=True)
class CompareResult:
    output: Path
    report: dict


@dataclass(frozen=True)
class _Run:
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


# ----------------------------------------------------------------- planning and training


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


def _slug(model: str) -> str:
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
                plans[name if len(models) == 1 else f"{_slug(model)}-{name}"] = validate(config)
    return plans


def compare(config: RunConfig | str | None = None, output: str | Path | None = None, *,
            runs: Sequence[str | Path] | None = None,
            models: Sequence[str] | str | None = None,
            methods: Sequence[str] | str | None = None,
            seeds: Sequence[int] | str = (42, 43, 44),
            lr_full: float | None = None, lr_lora: float | None = None, onnx: bool = False,
            overwrite: bool = False, progress: bool = True, **settings) -> CompareResult:
    """`sentitune compare`: train each model (`models`, default the config's) with each
    method (default: both with one model, the config's method with several) on each seed
    from `config` (a RunConfig or preset, with `settings` overrides) into OUTPUT/runs/ and
    compare them; or, with `runs`, compare finished run directories as they are. `onnx`
    exports every run lacking an ONNX model, so ONNX speed is measured too."""
    if runs:
        given = [name for name, value in (("config", config), ("lr_full", lr_full),
                                          ("lr_lora", lr_lora), ("models", models),
                                          ("methods", methods), *settings.items())
                 if value is not None]
        if given:
            flags = ", ".join(sorted("--data" if n == "dataset" else "--" + n.replace("_", "-")
                                     for n in given))
            raise SentituneError(f"--runs compares finished runs as they are; drop {flags}")
        return compare_runs(runs, Path(output or "runs/compare"), onnx=onnx, progress=progress)
    if models is not None and settings.get("model") is not None:
        raise SentituneError("give --models (several) or --model (one), not both")
    models = parse_models(models) if models is not None else None
    base = make_config(config, **settings)
    if methods is None:
        methods = (base.training.method,) if models and len(models) > 1 else METHODS
    names = "-".join(_slug(m) for m in models) if models else Path(base.model.model).name
    output = Path(output or f"runs/compare-{Path(base.data.dataset).stem}-{names}")
    rates = {m: r for m, r in (("full", lr_full), ("lora", lr_lora)) if r}
    return train_and_compare(base, output, models=models, methods=methods, seeds=seeds,
                             learning_rates=rates, onnx=onnx, overwrite=overwrite,
                             progress=progress)


def train_and_compare(base: RunConfig, output: Path, *,
                      models: Sequence[str] | None = None,
                      methods: Sequence[str] | str = METHODS,
                      seeds: Sequence[int] | str = (42, 43, 44),
                      learning_rates: Mapping[str, float] | None = None, onnx: bool = False,
                      overwrite: bool = False, progress: bool = True) -> CompareResult:
    """Train each model and method on each seed into OUTPUT/runs/, then compare them.

    Every model is checked (loadable, a sequence classifier, long enough) before anything
    trains. A finished run with exactly the planned settings is reused, so an interrupted
    comparison picks up where it stopped; `overwrite` retrains everything.
    """
    output = Path(output)
    models = parse_models(models) if models else (base.model.model,)
    methods = parse_methods(methods, at_least=1 if len(models) > 1 else 2)
    seeds = parse_seeds(seeds)
    for model in models:
        check_classifier_model(model, base.data.max_length)
    rates = dict(DEFAULT_LEARNING_RATES)
    if base.training.learning_rate is not None:
        rates[base.training.method] = base.training.learning_rate
    rates |= dict(learning_rates or {})
    plans = plan_runs(base, methods, seeds, rates, models)
    for name, config in plans.items():  # before training any, so nothing is half done
        run_dir = output / "runs" / name
        if run_dir.exists() and not overwrite and (
                plain(Run.open(run_dir).config.to_dict()) != plain(config.to_dict())):
            raise SentituneError(f"{run_dir} exists with other settings; choose another "
                                 "--output or pass --overwrite")
    for i, (name, config) in enumerate(plans.items(), 1):
        run_dir = output / "runs" / name
        if run_dir.exists() and not overwrite:
            _say(progress, f"[{i}/{len(plans)}] {name}: reusing the finished run")
            continue
        _say(progress, f"[{i}/{len(plans)}] {name}: training (lr "
                       f"{config.training.learning_rate:g}) ...")
        metrics = _train_isolated(config, run_dir, overwrite)
        _say(progress, f"[{i}/{len(plans)}] {name}: {metrics['train_runtime_s']:.0f} s, "
                       f"validation accuracy {metrics['validation']['accuracy']:.4f}")
    return compare_runs([output / "runs" / name for name in plans], output, onnx=onnx,
                        progress=progress)


def _train_isolated(config: RunConfig, run_dir: Path, overwrite: bool) -> dict:
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


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)


# ----------------------------------------------------------------- verifying


def _read_run(path: Path) -> _Run:
    run = Run.open(path)
    settings = {key: value for section in run.config.to_dict().values()
                for key, value in section.items()}
    versions = run.facts.get("versions") or {}
    settings |= {"device": run.metrics.get("device"), "torch": versions.get("torch"),
                 "transformers": versions.get("transformers")}
    history = [{k: v for k, v in row.items() if v is not None} for row in run.history()]
    return _Run(run, settings, history)


def check_comparable(runs: Sequence[_Run]) -> dict:
    """The settings all runs share; raise if they differ beyond model, method, its settings
    and seed.

    Also requires one task and label set, every model and method to have run on the same
    seeds, and each seed's runs to have seen exactly the same rows (the data fingerprints in
    config.yaml).
    """
    variants = _by_variant(runs)
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
    for method, group in _by_method(runs).items():
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
        raise SentituneError(f"{_compared(runs)} ran on different seeds ({listed}); give every "
                             "one the same seeds")
    for seed in sorted({run.seed for run in runs}):
        prints = {run.fingerprint for run in runs if run.seed == seed}
        if len(prints) > 1:
            raise SentituneError(f"the seed-{seed} runs saw different rows (data fingerprints "
                                 f"{', '.join(sorted(prints))}); retrain them on the same data")
    return shared


def _models(runs: Sequence[_Run]) -> list[str]:
    return list(dict.fromkeys(run.model for run in runs))


def _compared(runs: Sequence[_Run]) -> str:
    if len(_models(runs)) == 1:
        return "methods"
    return "models" if len(_by_method(runs)) == 1 else "models and methods"


def _by_method(runs: Sequence[_Run]) -> dict[str, list[_Run]]:
    present = {run.method for run in runs}
    return {m: [run for run in runs if run.method == m] for m in METHODS if m in present}


def _by_variant(runs: Sequence[_Run]) -> dict[tuple[str, str], list[_Run]]:
    """Runs per (model, method): models in the order given, methods in METHODS order."""
    present = {run.variant for run in runs}
    return {(model, method): [run for run in runs if run.variant == (model, method)]
            for model in _models(runs) for method in METHODS if (model, method) in present}


def variant_names(runs: Sequence[_Run]) -> dict[tuple[str, str], str]:
    """`lora` when one model is compared, `roberta` when one method, else `roberta lora`."""
    variants = _by_variant(runs)
    several_models = len({model for model, _ in variants}) > 1
    several_methods = len({method for _, method in variants}) > 1
    return {(model, method): " ".join(
        [model_label(model)] * several_models + [method] * (several_methods or not several_models))
        for model, method in variants}


# ----------------------------------------------------------------- measuring


def _stats(values: Sequence[float]) -> dict:
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0  # spread across seeds
    return {"mean": round(float(array.mean()), 6), "std": round(std, 6), "n": len(array),
            "values": [round(float(v), 6) for v in array]}


def _weights_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20


def _backends(run: _Run) -> list[str]:
    """torch, and the ONNX models the run was exported to."""
    exported = {"onnx": ONNX_NAME, "onnx-int8": INT8_NAME}
    return ["torch", *(name for name in ONNX_BACKENDS
                       if (run.run.onnx_dir / exported[name]).is_file())]


def measure_latency(runs: Sequence[_Run], texts: Sequence[str]
                    ) -> dict[tuple[Path, str], dict[int, float]]:
    """Milliseconds per text (tokenizing included) of each run's model and backend (torch and
    any exported ONNX), per batch size.

    The runs of one seed are loaded together and timed in turns, pass after pass, and
    each keeps its best pass: other work on a shared machine only ever adds time, and
    taking turns spreads what it adds over the models and methods alike.
    """
    from sentitune.inference.classifier import Classifier

    found: dict[tuple[Path, str], dict[int, float]] = {}
    for seed in sorted({run.seed for run in runs}):
        models = {(run.path, backend): Classifier.from_pretrained(run.path, backend=backend)
                  for run in runs if run.seed == seed for backend in _backends(run)}
        for size in LATENCY_BATCH_SIZES:
            for classifier in models.values():
                classifier.logits(texts, size)  # warm-up: first calls allocate and plan
            best = dict.fromkeys(models, math.inf)
            for _ in range(LATENCY_REPEATS):
                for key, classifier in models.items():
                    started = time.perf_counter()
                    classifier.logits(texts, size)
                    best[key] = min(best[key], time.perf_counter() - started)
            for key, seconds in best.items():
                found.setdefault(key, {})[size] = 1000 * seconds / len(texts)
    return found


def _latency_texts(run: _Run) -> list[str]:
    return list(run.run.rebuilt_splits().validation["text"][:LATENCY_TEXTS])


def _model_type(run: _Run) -> str:
    folder = run.path / "model" if (run.path / "model").is_dir() else run.path / "adapter"
    config = folder / "config.json"
    if config.is_file():
        import json

        return json.loads(config.read_text()).get("model_type", "unknown")
    return "unknown"


def _summarise(group: list[_Run], latency: dict[tuple[Path, str], dict[int, float]],
               output: Path) -> dict:
    method, first = group[0].method, group[0]
    trainable, total = first.metrics["trainable_params"], first.metrics["total_params"]
    checkpoint = "adapter" if method == "lora" else "model"
    merged = (first.path / "model").is_dir()
    largest = max(LATENCY_BATCH_SIZES)
    # A backend is reported for a variant only when every one of its runs was exported to it.
    backends = [b for b in _backends(first) if all((run.path, b) in latency for run in group)]
    return {
        "model": first.model,
        "model_type": _model_type(first),
        "method": method,
        "settings": {key: first.settings.get(key) for key in METHOD_SETTINGS[method]},
        "seeds": [run.seed for run in group],
        "runs": [_shown_path(run.path, output) for run in group],
        "trainable_params": trainable,
        "total_params": total,
        "trainable_pct": round(100 * trainable / total, 4),
        "peak_memory_mb": _stats([run.metrics["peak_memory_mb"] for run in group]),
        "train_runtime_s": _stats([run.metrics["train_runtime_s"] for run in group]),
        "train_samples_per_s": _stats([run.metrics["train_samples_per_s"] for run in group]),
        "val_accuracy": _stats([run.metrics["validation"]["accuracy"] for run in group]),
        # The runs' own selection metric (f1_macro by default), not the positive class's F1.
        "val_metric": (metric := first.metrics["selection_metric"]),
        "val_score": _stats([run.metrics["validation"][metric] for run in group]),
        # Seeds whose model learned nothing from the texts (metrics.learning_problem).
        "not_learned": [problem for run in group if (problem := learning_problem(
            run.metrics["validation"], run.run.task, run.run.labels)) is not None],
        "best_epoch": [run.metrics["best_epoch"] for run in group],
        "checkpoint": f"{checkpoint}/",
        "checkpoint_mb": round(_weights_mb(first.path / checkpoint), 3),
        "merged_model_mb": round(_weights_mb(first.path / "model"), 3) if merged else None,
        "latency_model": "model/ (merged)" if merged else "adapter/ (not merged)",
        "latency_ms_per_text": {f"batch_{size}": _stats([latency[run.path, "torch"][size]
                                                         for run in group])
                                for size in LATENCY_BATCH_SIZES},
        f"inference_texts_per_s_batch_{largest}": {
            backend: _stats([1000 / latency[run.path, backend][largest] for run in group])
            for backend in backends},
    }


def _shown_path(path: Path, output: Path) -> str:
    try:
        return str(path.resolve().relative_to(output.resolve()))
    except ValueError:
        return str(path.resolve())


def _machine() -> dict:
    import torch

    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        # Load from other work on the machine at report time (1, 5, 15 minutes): a loaded
        # machine slows every run, which is why runs are compared only with each other.
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def compare_runs(run_dirs: Sequence[str | Path], output: str | Path, *, onnx: bool = False,
                 progress: bool = True) -> CompareResult:
    """Verify that the runs are comparable, measure them and write the three reports.

    With `onnx`, each run without an ONNX export is exported first (fp32, verified against
    torch), so its ONNX speed is measured too.
    """
    output = Path(output)
    runs = [_read_run(Path(d)) for d in run_dirs]
    shared = check_comparable(runs)
    if onnx:
        from sentitune.exporting.run_export import export

        for run in runs:
            if not (run.run.onnx_dir / ONNX_NAME).is_file():
                _say(progress, f"exporting {run.path.name} to ONNX ...")
                export(run.path)
    _say(progress, f"measuring inference speed on {LATENCY_TEXTS} validation texts ...")
    texts = _latency_texts(runs[0])
    latency = measure_latency(runs, texts)
    names = variant_names(runs)
    report = {
        "shared_settings": shared,
        "data_fingerprints": {str(seed): next(r.fingerprint for r in runs if r.seed == seed)
                              for seed in sorted({r.seed for r in runs})},
        "compared": _compared(runs),
        "variants": {names[variant]: _summarise(group, latency, output)
                     for variant, group in _by_variant(runs).items()},
        "latency": {"texts": len(texts), "batch_sizes": list(LATENCY_BATCH_SIZES),
                    "statistic": f"best of {LATENCY_REPEATS} passes taken in turns, "
                               "tokenizing included"},
        "machine": _machine(),
    }
    report["tradeoffs"] = tradeoffs(report)
    files.write_json(output / "compare.json", report)
    files.write_text(output / "compare.md", markdown(report))
    plot_comparison(report, runs, output / "compare.png")
    return CompareResult(output, report)


# ----------------------------------------------------------------- reporting


def _pm(stats: dict, digits: int) -> str:
    mean, std = stats["mean"], stats["std"]
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if stats["n"] > 1 else f"{mean:.{digits}f}"


def _memory_kind(report: dict) -> str:
    on_gpu = report["shared_settings"].get("device") == "cuda"
    return "CUDA max allocated" if on_gpu else "peak RSS increase"


def _texts_per_s(m: dict) -> dict:
    return next(value for key, value in m.items() if key.startswith("inference_texts_per_s"))


def summary_table(report: dict) -> list[str]:
    """The per-model-and-method table (mean ± std over seeds) as markdown lines."""
    memory = _memory_kind(report)
    lines = [
        f"| compared | learning rate | trainable params | total params | {memory} (MB) | "
        f"train time (s) | samples/s | val accuracy | val {_metric(report)} | checkpoint (MB) | "
        "ms/text, batch 1 | ms/text, batch 32 | texts/s, batch 32 | architecture |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in report["variants"].items():
        latency = m["latency_ms_per_text"]
        speeds = ", ".join(f"{backend} {_pm(stats, 0)}"
                           for backend, stats in _texts_per_s(m).items())
        lines.append(
            f"| {name} | {m['settings']['learning_rate']:g} | {m['trainable_params']:,} "
            f"({m['trainable_pct']:.2f}%) | {m['total_params']:,} | "
            f"{_pm(m['peak_memory_mb'], 0)} | {_pm(m['train_runtime_s'], 1)} | "
            f"{_pm(m['train_samples_per_s'], 1)} | {_pm(m['val_accuracy'], 4)} | "
            f"{_pm(m['val_score'], 4)} | {m['checkpoint_mb']:.2f} ({m['checkpoint']}) | "
            f"{_pm(latency['batch_1'], 2)} | {_pm(latency['batch_32'], 2)} | {speeds} | "
            f"{m['model_type']} |")
    return lines


def _metric(report: dict) -> str:
    return next(iter(report["variants"].values()))["val_metric"]


def tradeoffs(report: dict) -> str:
    """A paragraph of what the numbers say; then which is most accurate, fastest and smallest.
    No verdict: the weights are the reader's.

    The first model's other methods are set against its first method; every other model
    against the first model trained with the same method, so like is compared with like.
    """
    variants = report["variants"]
    names = list(variants)
    base_name, base = names[0], variants[names[0]]
    sentences = []
    for name in names[1:]:
        m = variants[name]
        if m.get("model") == base.get("model"):
            sentences += _method_sentences(m, base)
            continue
        reference = next((n for n in names if variants[n].get("model") == base.get("model")
                          and variants[n]["method"] == m["method"]), base_name)
        sentences += _model_sentences(name, m, reference, variants[reference])
    if len(names) > 2:
        sentences.append(_leaders(variants))
    return " ".join(sentences)


def _method_sentences(m: dict, base: dict) -> list[str]:
    label, base_label = LABELS[m["method"]], LABELS[base["method"]]
    speed = m["train_samples_per_s"]["mean"] / base["train_samples_per_s"]["mean"]
    sentence = (f"Training ran at {m['train_samples_per_s']['mean']:.1f} samples/s against "
                f"{base['train_samples_per_s']['mean']:.1f} ({speed:.2f}x)")
    if m["method"] == "lora" and speed < 2:
        sentence += (", far less gain than the parameter count suggests: the forward pass "
                     "and most of the backward pass still run through every frozen layer")
    return [
        f"{label} trained {m['trainable_pct']:.2f}% of the parameters "
        f"({m['trainable_params']:,} of {m['total_params']:,}), {base_label} "
        f"{base['trainable_pct']:.0f}%.",
        _ratio_sentence("Peak training memory", m["peak_memory_mb"]["mean"],
                        base["peak_memory_mb"]["mean"], "MB", label, base_label),
        sentence + ".",
        _score_sentence(m, base, label, base_label),
        f"Stored per task: {m['checkpoint_mb']:.2f} MB ({m['checkpoint']}) against "
        f"{base['checkpoint_mb']:.2f} MB ({base['checkpoint']}).",
        _latency_sentence(m, base),
    ]


def _model_sentences(name: str, m: dict, base_name: str, base: dict) -> list[str]:
    """One model against another: size, training, accuracy and serving, as ratios."""
    size = m["total_params"] / base["total_params"]
    speed = m["train_samples_per_s"]["mean"] / base["train_samples_per_s"]["mean"]
    sentences = [
        f"{name} has {m['total_params'] / 1e6:.1f}M parameters against {base_name}'s "
        f"{base['total_params'] / 1e6:.1f}M ({size:.2f}x) and stores {m['checkpoint_mb']:.1f} "
        f"MB ({m['checkpoint']}) against {base['checkpoint_mb']:.1f} MB.",
        f"It trained at {m['train_samples_per_s']['mean']:.1f} samples/s against "
        f"{base['train_samples_per_s']['mean']:.1f} ({speed:.2f}x).",
        _ratio_sentence("Peak training memory", m["peak_memory_mb"]["mean"],
                        base["peak_memory_mb"]["mean"], "MB", name, base_name),
        _score_sentence(m, base, name, base_name),
    ]
    shared = [b for b in _texts_per_s(m) if b in _texts_per_s(base)]
    speeds = [f"{b} {_texts_per_s(m)[b]['mean']:.0f} against {_texts_per_s(base)[b]['mean']:.0f} "
              f"({_texts_per_s(m)[b]['mean'] / _texts_per_s(base)[b]['mean']:.2f}x)"
              for b in shared]
    sentences.append(f"Inference at batch 32, texts/s: {'; '.join(speeds)}.")
    return sentences


def _leaders(variants: dict) -> str:
    def best(key, pick=max):
        return pick(variants, key=lambda name: key(variants[name]))

    accurate = best(lambda m: m["val_accuracy"]["mean"])
    return (f"Most accurate: {accurate} ({variants[accurate]['val_accuracy']['mean']:.2%}); "
            f"fastest to train: {best(lambda m: m['train_samples_per_s']['mean'])}; fastest "
            f"to serve with torch: {best(lambda m: _texts_per_s(m)['torch']['mean'])}; "
            f"smallest on disk: {best(lambda m: m['checkpoint_mb'], min)}.")


def _ratio_sentence(what: str, value: float, reference: float, unit: str, label: str,
                    base_label: str) -> str:
    if reference <= 0:
        return f"{what}: {value:.0f} {unit} for {label}, none measured for {base_label}."
    return (f"{what} was {value:.0f} {unit} for {label} against {reference:.0f} {unit} for "
            f"{base_label} ({value / reference:.2f}x).")


def _score_sentence(m: dict, base: dict, label: str, base_label: str) -> str:
    """The validation comparison; none between models that learned nothing, whose equal
    scores (two arms answering one class everywhere) would read as a tie."""
    failed = [f"{name} has not learned in {len(v['not_learned'])} of {len(v['seeds'])} "
              f"seeds ({v['not_learned'][0]})"
              for name, v in ((label, m), (base_label, base)) if v["not_learned"]]
    if not failed:
        return _accuracy_sentence(m["val_score"], base["val_score"], m["val_metric"])
    return (f"No score comparison: {'; '.join(failed)}; retrain with another learning rate "
            "before comparing.")


def _accuracy_sentence(stats: dict, base: dict, metric: str = "accuracy") -> str:
    diff = 100 * (stats["mean"] - base["mean"])
    text = (f"Validation {metric} was {stats['mean']:.2%} against {base['mean']:.2%} "
            f"({diff:+.1f} points")
    if stats["n"] < 2 or base["n"] < 2:
        return text + ") from a single seed, so the seed-to-seed spread is unknown."
    # Two standard errors of the difference of the means: the seed noise of this comparison.
    noise = 200 * math.sqrt(stats["std"] ** 2 / stats["n"] + base["std"] ** 2 / base["n"])
    if abs(diff) <= noise:
        return (text + f"), within the seed-to-seed noise (±{noise:.1f} points over "
                f"{stats['n']} seeds), so these runs do not separate the two.")
    return (text + f"), more than the seed-to-seed noise (±{noise:.1f} points over "
            f"{stats['n']} seeds).")


def _latency_sentence(m: dict, base: dict) -> str:
    ours = m["latency_ms_per_text"]["batch_32"]["mean"]
    theirs = base["latency_ms_per_text"]["batch_32"]["mean"]
    change = ours / theirs - 1
    text = (f"Inference took {ours:.2f} against {theirs:.2f} ms per text at batch 32 "
            f"({change:+.0%}) and {m['latency_ms_per_text']['batch_1']['mean']:.2f} against "
            f"{base['latency_ms_per_text']['batch_1']['mean']:.2f} at batch 1")
    if m["latency_model"].startswith("adapter"):
        return text + "; the unmerged adapter adds a low-rank branch to every adapted layer."
    if abs(change) <= 0.15:
        return text + "; merged, the adapter leaves the architecture and its cost unchanged."
    return (text + "; merged models compute the same operations, so a gap this size comes "
            "from other load on the machine, not from the method.")


def _title(report: dict) -> str:
    shared = report["shared_settings"]
    variants = report["variants"]
    dataset = Path(str(shared["dataset"])).name
    if report.get("compared") == "methods":
        model = model_label(next(iter(variants.values()))["model"])
        methods = " vs ".join(LABELS[m["method"]] for m in variants.values())
        return f"{methods}: {model} on {dataset}"
    return f"{' vs '.join(variants)} on {dataset}"


def markdown(report: dict) -> str:
    shared = report["shared_settings"]
    machine = report["machine"]
    lines = [
        f"# {_title(report)}",
        "",
        *summary_table(report),
        "",
        "Mean ± standard deviation over seeds "
        f"{', '.join(map(str, next(iter(report['variants'].values()))['seeds']))}. Latency and "
        f"texts/s: {report['latency']['texts']} validation texts, "
        f"{report['latency']['statistic']}, on each run's merged model/ where it has one "
        "(torch) and its ONNX export where it has one.",
        "",
        "## Tradeoffs",
        "",
        report["tradeoffs"],
        "",
        "## Settings",
        "",
        "Verified identical for every run:",
        "",
        *(f"- {key}: {value}" for key, value in shared.items()),
        "",
        "Per model and method:",
        "",
        *(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in
                                    (m["settings"] | {"model": m["model"]}).items())
          for name, m in report["variants"].items()),
        "",
        "## Runs",
        "",
        *(f"- {name} seed {seed}: {path}, validation accuracy {acc:.4f}, best epoch {epoch}"
          for name, m in report["variants"].items()
          for seed, path, acc, epoch in zip(m["seeds"], m["runs"], m["val_accuracy"]["values"],
                                            m["best_epoch"], strict=True)),
        "",
        f"Machine: {machine['device']}, {machine['cpu_count']} CPUs, {machine['torch_threads']} "
        f"torch threads, {machine['platform']}; load average at report time "
        f"{', '.join(map(str, machine['load_average']))} (1, 5, 15 min).",
        "",
    ]
    return "\n".join(lines)


def _colors(report: dict) -> dict[str, str]:
    variants = report["variants"]
    if report.get("compared") == "methods":
        return {name: COLORS[m["method"]] for name, m in variants.items()}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {name: cycle[i % len(cycle)] for i, name in enumerate(variants)}


def plot_comparison(report: dict, runs: Sequence[_Run], path: Path) -> Path:
    """Bars for memory, speed, size, latency and accuracy; every run's learning curves."""
    names = list(report["variants"])
    variants = report["variants"]
    colors = _colors(report)
    run_names = variant_names(runs)
    fig, axes = plt.subplots(2, 4, figsize=(20, 8))

    def bars(ax, values: list[dict], title: str, ylabel: str) -> None:
        ax.bar(names, [v["mean"] for v in values], yerr=[v["std"] for v in values],
               color=[colors[n] for n in names], capsize=4)
        ax.set(title=title, ylabel=ylabel)
        ax.tick_params(axis="x", labelrotation=20 if len(names) > 2 else 0)

    bars(axes[0, 0], [variants[n]["peak_memory_mb"] for n in names],
         f"Training memory ({_memory_kind(report)})", "MB")
    bars(axes[0, 1], [variants[n]["train_samples_per_s"] for n in names], "Training speed",
         "samples/s")
    bars(axes[0, 2], [{"mean": variants[n]["checkpoint_mb"], "std": 0} for n in names],
         "Size on disk (model/ or adapter/)", "MB")
    width = 0.8 / len(names)
    backends = list(dict.fromkeys(b for n in names for b in _texts_per_s(variants[n])))
    for i, name in enumerate(names):
        offset = (i - (len(names) - 1) / 2) * width
        speeds = _texts_per_s(variants[name])
        axes[0, 3].bar(np.arange(len(backends)) + offset,
                       [speeds[b]["mean"] if b in speeds else 0 for b in backends], width,
                       yerr=[speeds[b]["std"] if b in speeds else 0 for b in backends],
                       color=colors[name], label=name, capsize=4)
        latency = variants[name]["latency_ms_per_text"]
        axes[1, 0].bar(np.arange(len(LATENCY_BATCH_SIZES)) + offset,
                       [latency[f"batch_{s}"]["mean"] for s in LATENCY_BATCH_SIZES], width,
                       yerr=[latency[f"batch_{s}"]["std"] for s in LATENCY_BATCH_SIZES],
                       color=colors[name], label=name, capsize=4)
        scores = [variants[name][k] for k in ("val_accuracy", "val_score")]
        axes[1, 1].bar(np.arange(2) + offset, [s["mean"] for s in scores], width,
                       yerr=[s["std"] for s in scores], color=colors[name], label=name,
                       capsize=4)
    axes[0, 3].set(title="Inference speed, batch 32", ylabel="texts/s",
                   xticks=range(len(backends)), xticklabels=backends)
    axes[1, 0].set(title="Inference latency, torch (merged model)", ylabel="ms per text",
                   xticks=range(len(LATENCY_BATCH_SIZES)),
                   xticklabels=[f"batch {s}" for s in LATENCY_BATCH_SIZES])
    lowest = min(variants[n][k]["mean"] for n in names for k in ("val_accuracy", "val_score"))
    axes[1, 1].set(title="Validation (mean ± std over seeds)", xticks=[0, 1],
                   xticklabels=["accuracy", _metric(report)], ylim=(max(0.0, lowest - 0.1), 1.0))
    for ax in (axes[0, 3], axes[1, 0], axes[1, 1]):
        ax.legend(fontsize="small")
    for key, ax, title in (("val_loss", axes[1, 2], "Validation loss"),
                           ("val_accuracy", axes[1, 3], "Validation accuracy")):
        for run in runs:
            name = run_names[run.variant]
            rows = [row for row in run.history if key in row]
            ax.plot([row["epoch"] for row in rows], [row[key] for row in rows], marker="o",
                    color=colors[name], alpha=0.7, label=f"{name} seed {run.seed}")
        ax.set(title=f"{title} per epoch", xlabel="epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize="small")
    fig.suptitle(_title(report))
    fig.tight_layout()
    return save_figure(fig, path)
