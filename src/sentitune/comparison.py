"""Full fine-tuning vs LoRA: the same recipe per method, measured and reported side by side.

`compare` trains every method on every seed from one base config (data, subset,
tokenizer, max length, batch size, warmup, epochs, schedule, evaluation) in which only
the method, its learning rate and the LoRA fields change. `compare_runs` then verifies
exactly that from the saved run directories (the same check guards runs trained
elsewhere), measures what training does not (checkpoint size, inference latency) and
writes compare.json, compare.md and compare.png.

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

from sentitune import files
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
from sentitune.plots import save_figure
from sentitune.run import Run

# What may differ between compared runs: the method and the settings that belong to it.
# Everything else (data, model, batch size, schedule, ..., library versions, device) must match.
METHOD_SETTINGS = {"full": ("learning_rate",), "lora": ("learning_rate", *LORA_SETTINGS)}
PER_RUN = {"method", "seed", *(name for names in METHOD_SETTINGS.values() for name in names)}
LATENCY_TEXTS = 64
LATENCY_BATCH_SIZES = (1, 32)
LATENCY_REPEATS = 3
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


# ----------------------------------------------------------------- planning and training


def _items(value: str | Sequence) -> list[str]:
    """`--methods full,lora` and `methods=("full", "lora")` alike, as strings."""
    return (value.split(",") if isinstance(value, str) else [str(v) for v in value])


def parse_methods(value: str | Sequence[str]) -> tuple[str, ...]:
    text = ",".join(_items(value))
    methods = tuple(m.strip() for m in _items(value) if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SentituneError(f"--methods: unknown method(s) {', '.join(unknown)}; use "
                             f"{','.join(METHODS)}")
    if len(set(methods)) < 2 or len(set(methods)) != len(methods):
        raise SentituneError(f"--methods needs two different methods, e.g. {','.join(METHODS)}; "
                             f"got '{text}'")
    return methods


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


def plan_runs(base: RunConfig, methods: Sequence[str], seeds: Sequence[int],
              learning_rates: Mapping[str, float]) -> dict[str, RunConfig]:
    """One config per method and seed, named like `lora-seed42`; nothing else changes.

    Ordered seed by seed (full-seed42, lora-seed42, full-seed43, ...): when other work
    loads the machine for a while, it slows both methods alike, not all runs of one.
    """
    defaults = TrainingConfig()
    plans = {}
    for seed in seeds:
        for method in methods:
            training = dataclasses.replace(base.training, method=method, seed=seed,
                                           learning_rate=learning_rates[method])
            if method != "lora":  # LoRA fields mean nothing here; defaults avoid a warning
                training = dataclasses.replace(
                    training, **{name: getattr(defaults, name) for name in LORA_SETTINGS})
            plans[f"{method}-seed{seed}"] = validate(dataclasses.replace(base, training=training))
    return plans


def compare(config: RunConfig | str | None = None, output: str | Path | None = None, *,
            runs: Sequence[str | Path] | None = None,
            methods: Sequence[str] | str = METHODS, seeds: Sequence[int] | str = (42, 43, 44),
            lr_full: float | None = None, lr_lora: float | None = None,
            overwrite: bool = False, progress: bool = True, **settings) -> CompareResult:
    """`sentitune compare`: train each method on each seed from `config` (a RunConfig or
    preset, with `settings` overrides) into OUTPUT/runs/ and compare them; or, with `runs`,
    compare finished run directories as they are."""
    if runs:
        given = [name for name, value in (("config", config), ("lr_full", lr_full),
                                          ("lr_lora", lr_lora), *settings.items())
                 if value is not None]
        if given:
            flags = ", ".join(sorted("--data" if n == "dataset" else "--" + n.replace("_", "-")
                                     for n in given))
            raise SentituneError(f"--runs compares finished runs as they are; drop {flags}")
        return compare_runs(runs, Path(output or "runs/compare"), progress=progress)
    base = make_config(config, **settings)
    output = Path(output or f"runs/compare-{Path(base.data.dataset).stem}-"
                            f"{Path(base.model.model).name}")
    rates = {m: r for m, r in (("full", lr_full), ("lora", lr_lora)) if r}
    return train_and_compare(base, output, methods=methods, seeds=seeds, learning_rates=rates,
                             overwrite=overwrite, progress=progress)


def train_and_compare(base: RunConfig, output: Path, *,
                      methods: Sequence[str] | str = METHODS,
                      seeds: Sequence[int] | str = (42, 43, 44),
                      learning_rates: Mapping[str, float] | None = None,
                      overwrite: bool = False, progress: bool = True) -> CompareResult:
    """Train each method on each seed into OUTPUT/runs/, then compare them.

    A finished run with exactly the planned settings is reused, so an interrupted
    comparison picks up where it stopped; `overwrite` retrains everything.
    """
    output = Path(output)
    methods, seeds = parse_methods(methods), parse_seeds(seeds)
    rates = dict(DEFAULT_LEARNING_RATES)
    if base.training.learning_rate is not None:
        rates["full"] = base.training.learning_rate
    rates |= dict(learning_rates or {})
    plans = plan_runs(base, methods, seeds, rates)
    for i, (name, config) in enumerate(plans.items(), 1):
        run_dir = output / "runs" / name
        if run_dir.exists() and not overwrite:
            if plain(Run.open(run_dir).config.to_dict()) != plain(config.to_dict()):
                raise SentituneError(f"{run_dir} exists with other settings; choose another "
                                     "--output or pass --overwrite")
            _say(progress, f"[{i}/{len(plans)}] {name}: reusing the finished run")
            continue
        _say(progress, f"[{i}/{len(plans)}] {name}: training (lr "
                       f"{config.training.learning_rate:g}) ...")
        metrics = _train_isolated(config, run_dir, overwrite)
        _say(progress, f"[{i}/{len(plans)}] {name}: {metrics['train_runtime_s']:.0f} s, "
                       f"validation accuracy {metrics['validation']['accuracy']:.4f}")
    return compare_runs([output / "runs" / name for name in plans], output, progress=progress)


def _train_isolated(config: RunConfig, run_dir: Path, overwrite: bool) -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # a fresh interpreter, nothing inherited
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_train_metrics, config, run_dir, overwrite).result()


def _train_metrics(config: RunConfig, run_dir: Path, overwrite: bool) -> dict:
    import warnings

    from sentitune.training import train

    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecations, as the CLI
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
    """The settings all runs share; raise if they differ beyond method, its settings, seed.

    Also requires every method to have run on the same seeds, and each seed's runs to
    have seen exactly the same rows (the data fingerprints in config.yaml).
    """
    if len({run.method for run in runs}) < 2:
        raise SentituneError("compare needs runs of two methods (full and lora); got only "
                             f"--method {runs[0].method if runs else 'none'}")
    seen: dict[tuple[str, int], Path] = {}
    for run in runs:
        key = (run.method, run.seed)
        if key in seen:
            raise SentituneError(f"{seen[key]} and {run.path} are both {run.method} with seed "
                                 f"{run.seed}; give each method and seed once")
        seen[key] = run.path
    first = runs[0]
    shared = {key: value for key, value in first.settings.items() if key not in PER_RUN}
    for run in runs[1:]:
        for key in sorted(set(shared) | set(run.settings) - PER_RUN):
            if run.settings.get(key) != shared.get(key):
                raise SentituneError(
                    f"{first.path.name} and {run.path.name} differ in {key} "
                    f"({shared.get(key)!r} vs {run.settings.get(key)!r}); compared runs may "
                    "differ only in method, learning rate, LoRA settings and seed")
    by_method = _by_method(runs)
    for method, group in by_method.items():
        for key in METHOD_SETTINGS[method]:
            values = {repr(run.settings.get(key)) for run in group}
            if len(values) > 1:
                raise SentituneError(f"the {method} runs differ in {key} ({', '.join(values)}); "
                                     f"use one {method} setting for every seed")
    seeds = {method: sorted(run.seed for run in group) for method, group in by_method.items()}
    if len({tuple(s) for s in seeds.values()}) > 1:
        listed = "; ".join(f"{m}: {', '.join(map(str, s))}" for m, s in seeds.items())
        raise SentituneError(f"methods ran on different seeds ({listed}); give every method "
                             "the same seeds")
    for seed in seeds[first.method]:
        prints = {run.fingerprint for run in runs if run.seed == seed}
        if len(prints) > 1:
            raise SentituneError(f"the seed-{seed} runs saw different rows (data fingerprints "
                                 f"{', '.join(sorted(prints))}); retrain them on the same data")
    return shared


def _by_method(runs: Sequence[_Run]) -> dict[str, list[_Run]]:
    present = {run.method for run in runs}
    return {m: [run for run in runs if run.method == m] for m in METHODS if m in present}


# ----------------------------------------------------------------- measuring


def _stats(values: Sequence[float]) -> dict:
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0  # spread across seeds
    return {"mean": round(float(array.mean()), 6), "std": round(std, 6), "n": len(array),
            "values": [round(float(v), 6) for v in array]}


def _weights_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20


def measure_latency(runs: Sequence[_Run], texts: Sequence[str]) -> dict[Path, dict[int, float]]:
    """Milliseconds per text (tokenizing included) of each run's model, per batch size.

    The runs of one seed are loaded together and timed in turns, pass after pass, and
    each keeps its best pass: other work on a shared machine only ever adds time, and
    taking turns spreads what it adds over the methods alike.
    """
    from sentitune.inference.classifier import Classifier

    found: dict[Path, dict[int, float]] = {run.path: {} for run in runs}
    for seed in sorted({run.seed for run in runs}):
        models = {run.path: Classifier.from_pretrained(run.path)
                  for run in runs if run.seed == seed}
        for size in LATENCY_BATCH_SIZES:
            for classifier in models.values():
                classifier.logits(texts, size)  # warm-up: first calls allocate and plan
            best = dict.fromkeys(models, math.inf)
            for _ in range(LATENCY_REPEATS):
                for path, classifier in models.items():
                    started = time.perf_counter()
                    classifier.logits(texts, size)
                    best[path] = min(best[path], time.perf_counter() - started)
            for path, seconds in best.items():
                found[path][size] = 1000 * seconds / len(texts)
    return found


def _latency_texts(run: _Run) -> list[str]:
    return list(run.run.rebuilt_splits().validation["text"][:LATENCY_TEXTS])


def _summarise(group: list[_Run], latency: dict[Path, dict[int, float]], output: Path) -> dict:
    method, first = group[0].method, group[0]
    trainable, total = first.metrics["trainable_params"], first.metrics["total_params"]
    checkpoint = "adapter" if method == "lora" else "model"
    merged = (first.path / "model").is_dir()
    return {
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
        "val_f1": _stats([run.metrics["validation"]["f1"] for run in group]),
        "best_epoch": [run.metrics["best_epoch"] for run in group],
        "checkpoint": f"{checkpoint}/",
        "checkpoint_mb": round(_weights_mb(first.path / checkpoint), 3),
        "merged_model_mb": round(_weights_mb(first.path / "model"), 3) if merged else None,
        "latency_model": "model/ (merged)" if merged else "adapter/ (not merged)",
        "latency_ms_per_text": {f"batch_{size}": _stats([latency[run.path][size]
                                                         for run in group])
                                for size in LATENCY_BATCH_SIZES},
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


def compare_runs(run_dirs: Sequence[str | Path], output: str | Path, *,
                 progress: bool = True) -> CompareResult:
    """Verify that the runs are comparable, measure them and write the three reports."""
    output = Path(output)
    runs = [_read_run(Path(d)) for d in run_dirs]
    shared = check_comparable(runs)
    _say(progress, f"measuring inference latency on {LATENCY_TEXTS} validation texts ...")
    texts = _latency_texts(runs[0])
    latency = measure_latency(runs, texts)
    report = {
        "shared_settings": shared,
        "data_fingerprints": {str(seed): next(r.fingerprint for r in runs if r.seed == seed)
                              for seed in sorted({r.seed for r in runs})},
        "methods": {method: _summarise(group, latency, output)
                    for method, group in _by_method(runs).items()},
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


def summary_table(report: dict) -> list[str]:
    """The per-method table (mean ± std over seeds) as markdown lines."""
    memory = _memory_kind(report)
    lines = [
        f"| method | learning rate | trainable params | total params | {memory} (MB) | "
        "train time (s) | samples/s | val accuracy | val F1 | checkpoint (MB) | "
        "ms/text, batch 1 | ms/text, batch 32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, m in report["methods"].items():
        latency = m["latency_ms_per_text"]
        lines.append(
            f"| {method} | {m['settings']['learning_rate']:g} | {m['trainable_params']:,} "
            f"({m['trainable_pct']:.2f}%) | {m['total_params']:,} | "
            f"{_pm(m['peak_memory_mb'], 0)} | {_pm(m['train_runtime_s'], 1)} | "
            f"{_pm(m['train_samples_per_s'], 1)} | {_pm(m['val_accuracy'], 4)} | "
            f"{_pm(m['val_f1'], 4)} | {m['checkpoint_mb']:.2f} ({m['checkpoint']}) | "
            f"{_pm(latency['batch_1'], 2)} | {_pm(latency['batch_32'], 2)} |")
    return lines


def tradeoffs(report: dict) -> str:
    """A paragraph of what the numbers say, each method against the first; no verdict."""
    methods = list(report["methods"])
    base_name, base = methods[0], report["methods"][methods[0]]
    sentences = []
    for name in methods[1:]:
        m = report["methods"][name]
        label, base_label = LABELS[name], LABELS[base_name]
        sentences.append(
            f"{label} trained {m['trainable_pct']:.2f}% of the parameters "
            f"({m['trainable_params']:,} of {m['total_params']:,}), {base_label} "
            f"{base['trainable_pct']:.0f}%.")
        sentences.append(_ratio_sentence(
            "Peak training memory", m["peak_memory_mb"]["mean"], base["peak_memory_mb"]["mean"],
            "MB", label, base_label))
        speed = m["train_samples_per_s"]["mean"] / base["train_samples_per_s"]["mean"]
        sentence = (f"Training ran at {m['train_samples_per_s']['mean']:.1f} samples/s against "
                    f"{base['train_samples_per_s']['mean']:.1f} ({speed:.2f}x)")
        if name == "lora" and speed < 2:
            sentence += (", far less gain than the parameter count suggests: the forward pass "
                         "and most of the backward pass still run through every frozen layer")
        sentences.append(sentence + ".")
        sentences.append(_accuracy_sentence(m["val_accuracy"], base["val_accuracy"]))
        sentences.append(
            f"Stored per task: {m['checkpoint_mb']:.2f} MB ({m['checkpoint']}) against "
            f"{base['checkpoint_mb']:.2f} MB ({base['checkpoint']}).")
        sentences.append(_latency_sentence(m, base))
    return " ".join(sentences)


def _ratio_sentence(what: str, value: float, reference: float, unit: str, label: str,
                    base_label: str) -> str:
    if reference <= 0:
        return f"{what}: {value:.0f} {unit} for {label}, none measured for {base_label}."
    return (f"{what} was {value:.0f} {unit} for {label} against {reference:.0f} {unit} for "
            f"{base_label} ({value / reference:.2f}x).")


def _accuracy_sentence(stats: dict, base: dict) -> str:
    diff = 100 * (stats["mean"] - base["mean"])
    text = (f"Validation accuracy was {stats['mean']:.2%} against {base['mean']:.2%} "
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


def markdown(report: dict) -> str:
    shared = report["shared_settings"]
    machine = report["machine"]
    lines = [
        f"# {' vs '.join(LABELS[m] for m in report['methods'])}: {shared['model']} on "
        f"{Path(str(shared['dataset'])).name}",
        "",
        *summary_table(report),
        "",
        "Mean ± standard deviation over seeds "
        f"{', '.join(map(str, next(iter(report['methods'].values()))['seeds']))}. Latency: "
        f"{report['latency']['texts']} validation texts, {report['latency']['statistic']}, "
        "on each run's merged model/ where it has one.",
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
        "Per method:",
        "",
        *(f"- {method}: " + ", ".join(f"{k} {v}" for k, v in m["settings"].items())
          for method, m in report["methods"].items()),
        "",
        "## Runs",
        "",
        *(f"- {method} seed {seed}: {path}, validation accuracy {acc:.4f}, best epoch {epoch}"
          for method, m in report["methods"].items()
          for seed, path, acc, epoch in zip(m["seeds"], m["runs"], m["val_accuracy"]["values"],
                                            m["best_epoch"], strict=True)),
        "",
        f"Machine: {machine['device']}, {machine['cpu_count']} CPUs, {machine['torch_threads']} "
        f"torch threads, {machine['platform']}; load average at report time "
        f"{', '.join(map(str, machine['load_average']))} (1, 5, 15 min).",
        "",
    ]
    return "\n".join(lines)


def plot_comparison(report: dict, runs: Sequence[_Run], path: Path) -> Path:
    """Bars for memory, speed, latency and accuracy; every run's learning curves overlaid."""
    methods = list(report["methods"])
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))

    def bars(ax, key: str, title: str, ylabel: str) -> None:
        stats = [report["methods"][m][key] for m in methods]
        ax.bar(methods, [s["mean"] for s in stats], yerr=[s["std"] for s in stats],
               color=[COLORS[m] for m in methods], capsize=4)
        ax.set(title=title, ylabel=ylabel)

    bars(axes[0, 0], "peak_memory_mb", f"Training memory ({_memory_kind(report)})", "MB")
    bars(axes[0, 1], "train_samples_per_s", "Training speed", "samples/s")
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        latency = report["methods"][method]["latency_ms_per_text"]
        x = np.arange(len(LATENCY_BATCH_SIZES)) + (i - (len(methods) - 1) / 2) * width
        axes[0, 2].bar(x, [latency[f"batch_{s}"]["mean"] for s in LATENCY_BATCH_SIZES], width,
                       yerr=[latency[f"batch_{s}"]["std"] for s in LATENCY_BATCH_SIZES],
                       color=COLORS[method], label=method, capsize=4)
        scores = [report["methods"][method][k] for k in ("val_accuracy", "val_f1")]
        x = np.arange(2) + (i - (len(methods) - 1) / 2) * width
        axes[1, 0].bar(x, [s["mean"] for s in scores], width, yerr=[s["std"] for s in scores],
                       color=COLORS[method], label=method, capsize=4)
    axes[0, 2].set(title="Inference latency (merged model)", ylabel="ms per text",
                   xticks=range(len(LATENCY_BATCH_SIZES)),
                   xticklabels=[f"batch {s}" for s in LATENCY_BATCH_SIZES])
    axes[0, 2].legend()
    lowest = min(report["methods"][m][k]["mean"] for m in methods
                 for k in ("val_accuracy", "val_f1"))
    axes[1, 0].set(title="Validation (mean ± std over seeds)", xticks=[0, 1],
                   xticklabels=["accuracy", "F1"], ylim=(max(0.0, lowest - 0.1), 1.0))
    axes[1, 0].legend()
    for key, ax, title in (("val_loss", axes[1, 1], "Validation loss"),
                           ("val_accuracy", axes[1, 2], "Validation accuracy")):
        for run in runs:
            rows = [row for row in run.history if key in row]
            ax.plot([row["epoch"] for row in rows], [row[key] for row in rows], marker="o",
                    color=COLORS[run.method], alpha=0.7, label=f"{run.method} seed {run.seed}")
        ax.set(title=f"{title} per epoch", xlabel="epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize="small")
    shared = report["shared_settings"]
    fig.suptitle(f"{' vs '.join(LABELS[m] for m in methods)}: {shared['model']} on "
                 f"{Path(str(shared['dataset'])).name}")
    fig.tight_layout()
    return save_figure(fig, path)
