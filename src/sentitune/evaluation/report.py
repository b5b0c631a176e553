"""Evaluation figures and the human-readable report (Markdown plus self-contained HTML).

The report is built once as a list of blocks (headings, paragraphs, tables, figures) and
rendered twice, so ``report.md`` and ``report.html`` always say the same thing. The HTML
embeds every PNG as a base64 data URI and escapes all text, so it can be mailed or
attached to a ticket as one file. Any section whose metrics are missing is left out.

Figures are saved through `plots.save_figure`, and every file is written atomically
(`files.atomic_path`), like the rest of the project.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from sentitune import files
from sentitune.plots import save_figure

HEADLINE_KEYS = ("accuracy", "f1", "precision", "recall", "loss")
# Values under these keys are fractions that read better as percentages.
PERCENT_KEYS = ("share", "coverage", "failure_rate")
MAX_ERRORS = 25
MAX_BEHAVIOURAL_EXAMPLES = 3
MAX_TEXT_CHARS = 300
# Below this many texts a slice's accuracy is too noisy to read as a weakness (one text of
# 29 is 3.4 points).
SMALL_SLICE = 30

# ("h1" | "h2" | "p", text) | ("table", headers, rows) | ("figure", caption, path)
Block = tuple
HIGHLIGHTED_IN_MARKDOWN = 3  # words set in bold per text in report.md


@dataclass(frozen=True)
class Highlighted:
    """A table cell holding a text and its word attributions (`sentitune.inference.explanations`):
    report.html shades each word (green for, red against the label), report.md sets the
    strongest supporting words in bold."""

    text: str
    words: tuple[dict, ...]

    def html(self) -> str:
        largest = max((abs(w["attribution"]) for w in self.words), default=0) or 1.0
        parts, at = [], 0
        for w in self.words:
            if w["end"] > MAX_TEXT_CHARS:
                break
            strength = 0.6 * abs(w["attribution"]) / largest
            rgb = "31,157,85" if w["attribution"] >= 0 else "180,35,24"
            parts += [html.escape(self.text[at:w["start"]]),
                      f'<span style="background:rgba({rgb},{strength:.3f})" '
                      f'title="{w["attribution"]:+.3f}">{html.escape(w["word"])}</span>']
            at = w["end"]
        rest = self.text[at:MAX_TEXT_CHARS] + ("…" if len(self.text) > MAX_TEXT_CHARS else "")
        return "".join(parts) + html.escape(rest)

    def markdown(self) -> str:
        strongest = sorted(self.words, key=lambda w: -w["attribution"])
        bold = {id(w) for w in strongest[:HIGHLIGHTED_IN_MARKDOWN] if w["attribution"] > 0}
        parts, at = [], 0
        for w in self.words:
            if w["end"] > MAX_TEXT_CHARS:
                break
            word = _md_text(w["word"])
            parts += [_md_text(self.text[at:w["start"]]),
                      f"**{word}**" if id(w) in bold else word]
            at = w["end"]
        parts.append(_md_text(self.text[at:MAX_TEXT_CHARS])
                     + ("…" if len(self.text) > MAX_TEXT_CHARS else ""))
        return " ".join("".join(parts).split())


def _highlighted(record: dict, column: str) -> Highlighted | None:
    explanation = record.get("explanation")
    if column != "text" or not explanation:
        return None
    return Highlighted(record["text"], tuple(explanation["words"]))


def plot_reliability(bins: Sequence[dict], path: str | os.PathLike) -> Path:
    """Reliability diagram from `calibration.reliability_bins`: accuracy per confidence bin."""
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    used = [b for b in bins if b["count"]]
    ax.bar(
        [(b["lower"] + b["upper"]) / 2 for b in used],
        [b["accuracy"] for b in used],
        width=[b["upper"] - b["lower"] for b in used],
        edgecolor="black",
        alpha=0.7,
        label="accuracy in bin",
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Confidence (top-class probability)",
           ylabel="Accuracy", title="Reliability diagram")
    ax.legend(loc="upper left")
    return save_figure(fig, path)


def plot_coverage_accuracy(
    curve: Sequence[dict], path: str | os.PathLike, chosen: dict | None = None
) -> Path:
    """Accuracy of auto-accepted predictions against the share accepted.

    `chosen` (from `decision.threshold_for_target_accuracy`) is marked when reached.
    """
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot([p["coverage"] for p in curve], [p["accuracy"] for p in curve], marker=".")
    if chosen and chosen.get("reached"):
        ax.scatter([chosen["coverage"]], [chosen["accuracy_accepted"]], color="red", zorder=3,
                   label=f"threshold {chosen['threshold']:.3f}")
        ax.legend(loc="lower left")
    ax.set(xlim=(0, 1.02), xlabel="Coverage (share of predictions accepted)",
           ylabel="Accuracy on accepted", title="Coverage vs accuracy")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_slice_accuracy(slice_metrics: dict[str, dict], path: str | os.PathLike) -> Path:
    """Horizontal bars of accuracy per slice; the dashed line is the whole set."""
    names = [n for n in slice_metrics if n != "all"]
    fig = Figure(figsize=(7, max(2.5, 0.35 * len(names) + 1.2)))
    ax = fig.add_subplot()
    bars = ax.barh(
        [f"{n} (n={slice_metrics[n]['count']})" for n in names],
        [slice_metrics[n]["accuracy"] for n in names],
        color="tab:blue",
    )
    ax.bar_label(bars, fmt="%.3f", padding=2, fontsize=8)
    if "all" in slice_metrics:
        ax.axvline(slice_metrics["all"]["accuracy"], color="black", linestyle="--",
                   label=f"all ({slice_metrics['all']['accuracy']:.3f})")
        # Below the axes: inside them the legend would cover a bar's value.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 1.2 / fig.get_figheight()),
                  frameon=False)
    ax.invert_yaxis()  # first slice on top
    ax.set(xlim=(0, 1.1), xlabel="Accuracy", title="Accuracy by slice")
    return save_figure(fig, path)


def plot_error_lengths(
    lengths_all: Sequence[int], lengths_errors: Sequence[int], path: str | os.PathLike
) -> Path:
    """Length distribution of all examples against that of the misclassified ones."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    edges = np.histogram_bin_edges(np.asarray(lengths_all, dtype=float), bins=30)
    # Densities, not counts: errors are few, and the question is whether they skew long.
    ax.hist(lengths_all, bins=edges, density=True, alpha=0.5,
            label=f"all examples (n={len(lengths_all)})")
    ax.hist(lengths_errors, bins=edges, density=True, alpha=0.5,
            label=f"errors (n={len(lengths_errors)})")
    ax.set(xlabel="Length (tokens)", ylabel="Density", title="Lengths of errors vs all")
    ax.legend()
    return save_figure(fig, path)


def _fmt(value: Any, key: str = "") -> str:
    """A metric value as table text: percentages for shares, 4 decimals for floats."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "support" and isinstance(value, float | np.floating) and value.is_integer():
        return str(int(value))  # a count, though scikit-learn reports it as a float
    if isinstance(value, float | np.floating):
        return f"{100 * value:.1f}%" if key in PERCENT_KEYS else f"{value:.4f}"
    text = " ".join(str(value).split())  # one line, for table cells
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"


def _key_value_table(values: dict, keys: Sequence[str] | None = None) -> Block:
    """Two-column table of the scalar entries of `values` (`keys` first, in order)."""
    keys = list(keys or [])
    keys += sorted(k for k, v in values.items() if k not in keys and not isinstance(v, dict | list))
    return ("table", ["Metric", "Value"], [[k, _fmt(values[k], k)] for k in keys if k in values])


def _label_names(metrics: dict, k: int) -> list[str]:
    """Names for confusion-matrix rows: the per-class keys, else indices."""
    names = list(metrics.get("per_class") or {})
    return names if len(names) == k else [str(i) for i in range(k)]


def _headline_blocks(metrics: dict) -> list[Block]:
    """Headline metrics, per-class table and confusion matrix."""
    headline = _key_value_table(metrics, HEADLINE_KEYS)
    blocks: list[Block] = [("h2", "Headline metrics"), headline] if headline[2] else []
    per_class = metrics.get("per_class")
    if per_class:
        columns = list(dict.fromkeys(k for row in per_class.values() for k in row))
        rows = [[name, *(_fmt(row.get(c), c) for c in columns)] for name, row in per_class.items()]
        blocks += [("h2", "Per class"), ("table", ["Class", *columns], rows)]
    matrix = metrics.get("confusion_matrix")
    if matrix:
        names = _label_names(metrics, len(matrix))
        rows = [[name, *map(_fmt, row)] for name, row in zip(names, matrix, strict=True)]
        blocks += [
            ("h2", "Confusion matrix"),
            ("p", "Rows are true classes, columns predicted classes."),
            ("table", ["true \\ predicted", *names], rows),
        ]
    return blocks


def _slice_blocks(metrics: dict) -> list[Block]:
    """Per-slice metrics table."""
    slices = metrics.get("slices")
    if not slices:
        return []
    columns = ["count", "share", "accuracy", "f1_macro", "errors"]
    small = {name for name, m in slices.items() if m.get("count", 0) < SMALL_SLICE}
    rows = [[name + (" (small sample)" if name in small else ""),
             *(_fmt(m.get(c), c) for c in columns)] for name, m in slices.items()]
    caveat = (f" Slices of fewer than {SMALL_SLICE} texts are marked small sample: there one "
              "text moves accuracy by several points, so their numbers are hints, not "
              "findings." if small else "")
    return [
        ("h2", "Slices"),
        ("p", "Accuracy on subsets of the evaluation set; a slice much below 'all' is a weak "
              "spot. Slices overlap; empty slices are left out." + caveat),
        ("table", ["Slice", *columns], rows),
    ]



def _calibration_blocks(metrics: dict) -> list[Block]:
    """Calibration numbers with a one-line reading guide."""
    calibration = metrics.get("calibration")
    if not calibration:
        return []
    temperature = calibration.get("temperature", 1.0)
    # The probabilities the run returns come after its temperature: their ECE leads.
    rows = [[f"ECE of the probabilities the run returns (temperature {temperature:g})",
             _fmt(calibration["ece_after_temperature"], "ece")]]
    if temperature != 1.0:
        rows.append(["ECE of the raw model, before the temperature",
                     _fmt(calibration["ece"], "ece")])
    return [
        ("h2", "Calibration"),
        ("p", "Expected calibration error (ECE) is the average gap between confidence and "
              "accuracy; 0 is perfect. Temperature scaling divides logits by T (T > 1: the "
              "model was overconfident); the run applies it to every probability it returns."
              + (f" {calibration['note']}." if calibration.get("note") else "")),
        ("table", ["Metric", "Value"], rows),
    ]


def _review_blocks(metrics: dict) -> list[Block]:
    """The confidence threshold for the human review queue, in words and numbers."""
    review = metrics.get("review")
    if not review:
        return []
    blocks: list[Block] = [("h2", "Review queue")]
    if review.get("reached", True) and review.get("coverage") is not None:
        blocks.append(
            ("p", f"Predictions with confidence below {_fmt(review.get('threshold'))} go to "
                  f"review; the {_fmt(review['coverage'], 'coverage')} accepted automatically "
                  f"have accuracy {_fmt(review.get('accuracy_accepted'))}.")
        )
    else:
        blocks.append(("p", "No confidence threshold reaches the target accuracy: every "
                            "prediction needs review."))
    blocks.append(_key_value_table(review, ("threshold", "coverage", "accuracy_accepted")))
    return blocks


def _behavioral_blocks(metrics: dict) -> list[Block]:
    """Behavioural test failure rates and a few failing cases per test."""
    behavioral = metrics.get("behavioral")
    if not behavioral or not behavioral.get("tests"):
        return []
    tests = behavioral["tests"]
    rows = [
        [t["name"], t.get("capability", ""), t["kind"], _fmt(t["n"]), _fmt(t["failures"]),
         _fmt(t["failure_rate"], "failure_rate"), _fmt(t.get("mean_abs_change")),
         t.get("description", "")]
        for t in tests
    ]
    blocks: list[Block] = [
        ("h2", "Behavioural tests"),
        ("p", "Generated CheckList-style cases: MFT = expected label, INV = prediction must "
              "not change, DIR = p(positive) must move the expected way; mean |Δp|: how far "
              "p(positive) moves between a case and its variant. Overall failure "
              f"rate {_fmt(behavioral.get('overall_failure_rate'), 'failure_rate')}."),
        ("table", ["Test", "Capability", "Kind", "Cases", "Failures", "Failure rate",
                   "Mean |Δp|", "Description"], rows),
    ]
    if behavioral.get("capabilities"):
        blocks.append(("table", ["Capability", "Failure rate"],
                       [[name, _fmt(rate, "failure_rate")]
                        for name, rate in behavioral["capabilities"].items()]))
    examples = [
        [t["name"], e["text"], e.get("variant", e.get("expected", "")),
         _fmt(e.get("predicted")) + (f" → {e['variant_predicted']}" if "variant" in e else "")]
        for t in tests
        for e in t.get("examples", [])[:MAX_BEHAVIOURAL_EXAMPLES]
    ]
    if examples:
        blocks += [
            ("p", "Some failing cases:"),
            ("table", ["Test", "Text", "Expected / variant", "Predicted"], examples),
        ]
    return blocks


ERROR_COLUMNS = ("kind", "text", "true_label", "label", "true_labels", "labels", "score",
                 "slices")


def _error_blocks(errors: list[dict] | None) -> list[Block]:
    """A table of misclassified examples (the first MAX_ERRORS)."""
    if not errors:
        return []
    columns = [c for c in ERROR_COLUMNS if any(c in e for e in errors)]

    def cell(value: Any, column: str) -> str:
        return _fmt(", ".join(value) if isinstance(value, list) else value, column)

    rows = [[_highlighted(e, c) or cell(e.get(c), c) for c in columns]
            for e in errors[:MAX_ERRORS]]
    shown = f"the first {MAX_ERRORS} of {len(errors)}" if len(errors) > MAX_ERRORS else "all"
    return [("h2", "Errors"), ("p", f"Misclassified examples ({shown})." + _WHY),
            ("table", columns, rows)]


_WHY = (" Shaded words: how much each moved the predicted label's probability (green: for "
        "it, red: against it; leave-one-word-out occlusion).")
QUEUE_COLUMNS = ("text", "label", "labels", "score", "true_label", "true_labels")


def _queue_blocks(queue: list[dict] | None) -> list[Block]:
    """The head of the review queue: the most uncertain answers, words highlighted."""
    if not queue:
        return []
    columns = [c for c in QUEUE_COLUMNS if any(c in e for e in queue)]
    rows = [[_highlighted(e, c) or _fmt(", ".join(e[c]) if isinstance(e.get(c), list)
                                        else e.get(c), c) for c in columns]
            for e in queue[:MAX_ERRORS]]
    return [("h2", "Review queue, most uncertain first"),
            ("p", f"The first {len(rows)} answers below the review threshold." + _WHY),
            ("table", columns, rows)]


# Which section each known figure belongs under; others go to a final "Figures" section.
FIGURE_SECTIONS = {
    "learning_curves": "Headline metrics",
    "confusion_matrix": "Headline metrics",
    "slice_accuracy": "Slices",
    "error_lengths": "Slices",
    "reliability": "Calibration",
    "coverage_accuracy": "Review queue",
}


def _summary_blocks(summary: dict | None) -> list[Block]:
    """What was evaluated: run, model, data, date."""
    if not summary:
        return []
    return [("h2", "Run"),
            ("table", ["", "Value"], [[k, _fmt(v, k)] for k, v in summary.items()])]


def _report_blocks(
    metrics: dict, figures: dict[str, Path], title: str, summary: dict | None,
    errors: list[dict] | None, queue: list[dict] | None = None
) -> list[Block]:
    """The whole report as blocks, with each figure placed after its section."""
    sections = [
        _summary_blocks(summary),
        _headline_blocks(metrics),
        _slice_blocks(metrics),
        _calibration_blocks(metrics),
        _review_blocks(metrics) + _queue_blocks(queue),
        _behavioral_blocks(metrics),
        _error_blocks(errors),
    ]
    placed = set()
    blocks: list[Block] = [("h1", title)]
    for section in filter(None, sections):
        blocks += section
        for name, path in figures.items():
            if FIGURE_SECTIONS.get(name) == section[0][1]:
                blocks.append(("figure", name, Path(path)))
                placed.add(name)
    rest = [("figure", n, Path(p)) for n, p in figures.items() if n not in placed]
    return blocks + ([("h2", "Figures"), *rest] if rest else [])


def _md_text(text: str) -> str:
    """User text safe inside Markdown: HTML escaped, pipes escaped for table cells."""
    return html.escape(str(text), quote=False).replace("|", "\\|")


def _render_markdown(blocks: list[Block], out_dir: Path) -> str:
    """The blocks as Markdown; figures linked by path relative to the report."""
    lines = []
    for kind, *rest in blocks:
        if kind == "h1":
            lines += [f"# {_md_text(rest[0])}", ""]
        elif kind == "h2":
            lines += [f"## {_md_text(rest[0])}", ""]
        elif kind == "p":
            lines += [_md_text(rest[0]), ""]
        elif kind == "table":
            headers, rows = rest
            lines.append("| " + " | ".join(map(_md_text, headers)) + " |")
            lines.append("|" + "---|" * len(headers))
            lines += ["| " + " | ".join(c.markdown() if isinstance(c, Highlighted)
                                        else _md_text(c) for c in row) + " |" for row in rows]
            lines.append("")
        else:
            name, path = rest
            link = Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
            lines += [f"![{_md_text(name)}]({link})", ""]
    return "\n".join(lines)


CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left;
         vertical-align: top; }
th { background: #f3f3f3; }
figure { margin: 1rem 0 2rem; }
img { max-width: 100%; }
figcaption { color: #666; font-size: 0.85rem; }
"""


def _render_html(blocks: list[Block]) -> str:
    """The blocks as one HTML page; every figure embedded as a base64 data URI."""
    esc = html.escape
    parts = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{esc(str(rest[0]))}</{kind}>")
        elif kind == "table":
            headers, rows = rest
            head = "".join(f"<th>{esc(str(h))}</th>" for h in headers)
            body = "".join(
                "<tr>" + "".join(f"<td>{c.html() if isinstance(c, Highlighted) else esc(str(c))}"
                                 "</td>" for c in row) + "</tr>" for row in rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            name, path = rest
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(name)}</figcaption></figure>"
            )
    title = esc(str(blocks[0][1]))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def write_report(
    out_dir: str | os.PathLike,
    metrics: dict,
    figures: dict[str, Path],
    title: str,
    summary: dict | None = None,
    errors: list[dict] | None = None,
    queue: list[dict] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` and a self-contained ``report.html`` into `out_dir`.

    `figures` maps a name to a PNG; the known names (learning_curves, confusion_matrix,
    reliability, coverage_accuracy, slice_accuracy, error_lengths) are placed in their
    sections. `summary` (run, model, data, date) opens the report; `errors` are records
    in the prediction schema with their truth, `queue` the head of the review queue (both
    with their words highlighted where a record has an `explanation`). Returns both paths.
    """
    return write_document(out_dir, _report_blocks(metrics, figures, title, summary, errors,
                                                  queue))


def write_document(out_dir: str | os.PathLike, blocks: list[Block],
                   stem: str = "report") -> tuple[Path, Path]:
    """Render `blocks` (the first an h1 title) to STEM.md and a self-contained STEM.html."""
    out_dir = Path(out_dir)
    md_path, html_path = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
    for path, text in ((md_path, _render_markdown(blocks, out_dir)),
                       (html_path, _render_html(blocks))):
        with files.atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return md_path, html_path
