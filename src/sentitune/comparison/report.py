"""Reporting a comparison: the summary table, a paragraph of trade-offs, compare.md and
compare.png."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt  # sentitune.plots selects the file-only Agg backend
import numpy as np

from sentitune.comparison.measure import LATENCY_BATCH_SIZES
from sentitune.comparison.verify import ComparedRun, variant_names
from sentitune.model import model_label
from sentitune.plots import save_figure

LABELS = {"full": "full fine-tuning", "lora": "LoRA"}
COLORS = {"full": "tab:blue", "lora": "tab:orange"}



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


def plot_comparison(report: dict, runs: Sequence[ComparedRun], path: Path) -> Path:
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
