"""Models and methods side by side: the same recipe for each, measured and reported.

    plan      the configs (one per model, method and seed) and training them
    verify    the runs differ only where they may (`check_comparable`)
    measure   checkpoint size and inference speed, summarised over seeds
    report    the table, the trade-offs paragraph, compare.md and compare.png


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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sentitune import console, files
from sentitune.comparison.measure import (
    LATENCY_BATCH_SIZES,
    LATENCY_REPEATS,
    LATENCY_TEXTS,
    latency_texts,
    machine,
    measure_latency,
    summarise,
)
from sentitune.comparison.plan import (
    parse_methods,
    parse_models,
    parse_seeds,
    plan_runs,
    say,
    slug,
    train_isolated,
)
from sentitune.comparison.report import markdown, plot_comparison, summary_table, tradeoffs
from sentitune.comparison.verify import (
    by_variant,
    check_comparable,
    compared,
    read_run,
    variant_names,
)
from sentitune.config import DEFAULT_LEARNING_RATES, METHODS, RunConfig, make_config, plain
from sentitune.errors import SentituneError
from sentitune.model import check_classifier_model
from sentitune.run import ONNX_NAME, Run

__all__ = ["CompareResult", "compare", "compare_runs", "plan_runs", "summary_table",
           "tradeoffs", "train_and_compare"]


@dataclass(frozen=True)
class CompareResult:
    output: Path
    report: dict


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
            flags = ", ".join(sorted(console.flag(n) for n in given))
            raise SentituneError(f"--runs compares finished runs as they are; drop {flags}")
        return compare_runs(runs, Path(output or "runs/compare"), onnx=onnx, progress=progress)
    if models is not None and settings.get("model") is not None:
        raise SentituneError("give --models (several) or --model (one), not both")
    models = parse_models(models) if models is not None else None
    base = make_config(config, **settings)
    if methods is None:
        methods = (base.training.method,) if models and len(models) > 1 else METHODS
    names = "-".join(slug(m) for m in models) if models else Path(base.model.model).name
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
            say(progress, f"[{i}/{len(plans)}] {name}: reusing the finished run")
            continue
        say(progress, f"[{i}/{len(plans)}] {name}: training (lr "
                       f"{config.training.learning_rate:g}) ...")
        metrics = train_isolated(config, run_dir, overwrite)
        say(progress, f"[{i}/{len(plans)}] {name}: {metrics['train_runtime_s']:.0f} s, "
                       f"validation accuracy {metrics['validation']['accuracy']:.4f}")
    return compare_runs([output / "runs" / name for name in plans], output, onnx=onnx,
                        progress=progress)


def compare_runs(run_dirs: Sequence[str | Path], output: str | Path, *, onnx: bool = False,
                 progress: bool = True) -> CompareResult:
    """Verify that the runs are comparable, measure them and write the three reports.

    With `onnx`, each run without an ONNX export is exported first (fp32, verified against
    torch), so its ONNX speed is measured too.
    """
    output = Path(output)
    runs = [read_run(Path(d)) for d in run_dirs]
    shared = check_comparable(runs)
    if onnx:
        from sentitune.exporting.run_export import export

        for run in runs:
            if not (run.run.onnx_dir / ONNX_NAME).is_file():
                say(progress, f"exporting {run.path.name} to ONNX ...")
                export(run.path)
    say(progress, f"measuring inference speed on {LATENCY_TEXTS} validation texts ...")
    texts = latency_texts(runs[0])
    latency = measure_latency(runs, texts)
    names = variant_names(runs)
    report = {
        "shared_settings": shared,
        "data_fingerprints": {str(seed): next(r.fingerprint for r in runs if r.seed == seed)
                              for seed in sorted({r.seed for r in runs})},
        "compared": compared(runs),
        "variants": {names[variant]: summarise(group, latency, output)
                     for variant, group in by_variant(runs).items()},
        "latency": {"texts": len(texts), "batch_sizes": list(LATENCY_BATCH_SIZES),
                    "statistic": f"best of {LATENCY_REPEATS} passes taken in turns, "
                               "tokenizing included"},
        "machine": machine(),
    }
    report["tradeoffs"] = tradeoffs(report)
    files.write_json(output / "compare.json", report)
    files.write_text(output / "compare.md", markdown(report))
    plot_comparison(report, runs, output / "compare.png")
    return CompareResult(output, report)
