"""Figures and the Markdown/HTML report, from a small hand-made metrics dict."""

import numpy as np
import pytest

from sentitune.calibration import reliability_bins
from sentitune.decision import coverage_accuracy_curve, threshold_for_target_accuracy
from sentitune.evaluation.report import (
    plot_coverage_accuracy,
    plot_error_lengths,
    plot_reliability,
    plot_slice_accuracy,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SLICES = {
    "all": {"count": 6, "accuracy": 0.5, "f1_macro": 0.5, "errors": 3, "share": 1.0},
    "negation": {"count": 2, "accuracy": 0.0, "f1_macro": 0.0, "errors": 2, "share": 1 / 3},
    "class:<b>pos</b>": {"count": 3, "accuracy": 2 / 3, "f1_macro": 0.4, "errors": 1,
                         "share": 0.5},
}


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1], size=200)
    labels = rng.integers(0, 2, 200)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    chosen = threshold_for_target_accuracy(confidence, correct, 0.5)
    return {
        "reliability": plot_reliability(reliability_bins(probs, labels), out / "reliability.png"),
        "coverage_accuracy": plot_coverage_accuracy(
            coverage_accuracy_curve(confidence, correct), out / "coverage.png", chosen=chosen
        ),
        "slice_accuracy": plot_slice_accuracy(SLICES, out / "slices.png"),
        "error_lengths": plot_error_lengths([5, 9, 12, 30, 31, 80], [30, 80], out / "lengths.png"),
    }


def test_figures_are_pngs(figures):
    for path in figures.values():
        assert path.read_bytes().startswith(PNG_MAGIC)
    # atomic writes stage hidden files beside the target: none may be left over
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_full_report(tmp_path, figures):
    metrics = {
        "accuracy": 0.5, "f1": 0.48, "precision": 0.5, "recall": 0.47, "loss": 0.69,
        "per_class": {"neg": {"precision": 0.5, "recall": 0.4, "f1": 0.44, "support": 3},
                      "pos": {"precision": 0.5, "recall": 0.6, "f1": 0.55, "support": 3}},
        "confusion_matrix": [[1, 2], [1, 2]],
        "slices": SLICES,
        "calibration": {"ece": 0.12, "ece_after_temperature": 0.03, "temperature": 1.8},
        "review": {"threshold": 0.91, "coverage": 0.62, "accuracy_accepted": 0.95,
                   "reached": True},
        "behavioral": {
            "tests": [{"name": "negated positive", "kind": "MFT", "description": "d", "n": 40,
                       "failures": 10, "failure_rate": 0.25,
                       "examples": [{"text": "Not good & <i>bad</i>", "predicted": "pos",
                                     "p_positive": 0.9, "expected": "negative"}]}],
            "overall_failure_rate": 0.25,
        },
    }
    errors = [{"text": "<script>alert('x')</script> | pipe", "label": "neg", "pred": "pos",
               "confidence": 0.97}]
    md_path, html_path = write_report(tmp_path, metrics, figures, "Eval <run 1>",
                                       errors=errors)

    assert (md_path, html_path) == (tmp_path / "report.md", tmp_path / "report.html")
    md, page = md_path.read_text(), html_path.read_text()

    for heading in ("Headline metrics", "Per class", "Confusion matrix", "Slices",
                    "Calibration", "Review queue", "Behavioural tests", "Errors"):
        assert f"## {heading}" in md and f"<h2>{heading}</h2>" in page
    assert "| accuracy | 0.5000 |" in md
    # The ECE of the probabilities the run returns leads; the raw one is labelled as such
    # (the report once showed only the raw 0.12 while the run returned 0.03-calibrated ones).
    calibration = md[md.index("## Calibration"):md.index("## Review queue")]
    assert calibration.index(
        "| ECE of the probabilities the run returns (temperature 1.8) | 0.0300 |") < \
        calibration.index("| ECE of the raw model, before the temperature | 0.1200 |")
    # Slices of a handful of texts say that they are.
    assert "| negation (small sample) | 2 |" in md and "fewer than 30 texts" in md
    assert "62.0%" in md and "25.0%" in md
    assert "reliability.png)" in md and "data:image/png" not in md

    assert page.count("data:image/png;base64,") == 4
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;b&gt;pos&lt;/b&gt;" in page and "<title>Eval &lt;run 1&gt;</title>" in page
    assert "\\| pipe" in md and "&lt;script&gt;" in md
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_sparse_metrics_report(tmp_path):
    md_path, html_path = write_report(tmp_path / "new", {"accuracy": 0.9}, {}, "Minimal")
    md = md_path.read_text()
    assert "| accuracy | 0.9000 |" in md
    for missing in ("Slices", "Calibration", "Review queue", "Behavioural", "Errors", "Figures"):
        assert missing not in md
    assert "<h1>Minimal</h1>" in html_path.read_text()


def test_unreached_review_target_and_extra_figure(tmp_path, figures):
    metrics = {"review": {"threshold": 1.0, "coverage": 0.0, "accuracy_accepted": None,
                          "reached": False}}
    md_path, html_path = write_report(tmp_path, metrics, {"custom": figures["reliability"]}, "T")
    md = md_path.read_text()
    assert "every prediction needs review" in md
    assert "Headline metrics" not in md  # no headline numbers, no empty table
    assert "| accuracy_accepted | – |" in md
    assert "## Figures" in md and "![custom](" in md
    assert html_path.read_text().count("data:image/png;base64,") == 1
