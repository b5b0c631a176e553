"""Evaluation and behavioural checks on tiny real runs: what is written, and that it adds up."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from conftest import (
    assert_one_line_error,
    build_tiny_model,
    figure_pngs,
    make_always_positive,
    make_sentiment_frame,
    read_jsonl,
    run_cli,
    tiny_config,
    validation_split,
)

from sentitune.decision import threshold_for_target, threshold_for_target_accuracy
from sentitune.evaluation.evaluator import evaluate
from sentitune.evaluation.slices import Slice
from sentitune.inference.classifier import Classifier

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TARGET = 0.99


# ----------------------------------------------------------------- binary run


@pytest.fixture(scope="module")
def binary(tmp_path_factory, tiny_bert, sentiment_csv):
    """A tiny run of one epoch, evaluated with every option: unsure of many validation rows
    (the three-epoch tiny run is right and sure of all, and would queue none)."""
    from sentitune.training import train

    root = tmp_path_factory.mktemp("eval")
    run = train(tiny_config(tiny_bert, sentiment_csv, epochs=1.0), root / "run",
                progress=False).run_dir
    slices = [Slice("film", "mentions a film", r"\bfilm\b"),
              Slice("short", "three words or fewer", lambda text: len(text.split()) <= 3)]
    result = evaluate(run, str(sentiment_csv), output=root / "out", slices=slices,
                      target_accuracy=TARGET, review_queue=root / "queue.jsonl")
    return run, result


def test_metrics_hold_the_contract(binary):
    _, result = binary
    m = json.loads((result.output / "metrics.json").read_text())
    assert m == json.loads(json.dumps(result.metrics))
    assert {"accuracy", "f1", "slices", "calibration", "behavioral", "review"} <= set(m)
    assert {"ece", "ece_after_temperature", "temperature"} <= set(m["calibration"])
    assert {"threshold", "coverage", "accuracy_accepted"} <= set(m["review"])
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    assert (m["false_positives"], m["false_negatives"]) == (fp, fn)
    tests = m["behavioral"]["tests"]
    assert len(tests) >= 8
    assert all(t["failure_rate"] == pytest.approx(t["failures"] / t["n"]) for t in tests)


def test_slice_counts_add_up(binary):
    run, result = binary
    s = result.metrics["slices"]
    n, errors = s["all"]["count"], s["all"]["errors"]
    # The run's own data: its 24 held-out validation rows, not the 216 it trained on.
    texts = list(validation_split(run)["text"])
    assert result.metrics["split"] == "validation"
    assert n == result.metrics["n"] == len(texts) == 24
    for prefix in ("class:", "length:"):
        group = [m for name, m in s.items() if name.startswith(prefix)]
        assert sum(m["count"] for m in group) == n
        assert sum(m["errors"] for m in group) == errors
    assert s["film"]["count"] == sum(bool(re.search(r"\bfilm\b", t)) for t in texts)
    assert s["short"]["count"] == sum(len(t.split()) <= 3 for t in texts)


def test_review_threshold_delivers_target_and_queue_holds_the_rest(binary):
    run, result = binary
    review = result.metrics["review"]
    threshold = review["threshold"]
    assert json.loads((run / "decision.json").read_text())["review_threshold"] == threshold

    # Checked through predict, the consumer of decision.json, on the run's validation rows.
    clf = Classifier.from_pretrained(run)
    val = validation_split(run)
    answers = clf.predict(list(val["text"]))
    accepted = [a["label"] == clf.labels[y]
                for a, y in zip(answers, val["label"], strict=True) if not a["needs_review"]]
    assert review["reached"] and accepted
    assert np.mean(accepted) >= TARGET
    assert review["validation_accuracy_accepted"] == np.mean(accepted)
    assert review["validation_coverage"] == len(accepted) / len(val)

    queue = read_jsonl(result.review_queue)
    texts = list(val["text"])
    flagged = [a["text"] for a in clf.predict(texts) if a["needs_review"]]
    assert Counter(r["text"] for r in queue) == Counter(flagged)
    assert len(queue) == review["queued"] == round((1 - review["coverage"]) * len(texts))
    scores = [r["score"] for r in queue]
    assert scores == sorted(scores) and all(p < threshold for p in scores)
    assert all(r["needs_review"] for r in queue)
    assert set(queue[0]) == {"text", "label", "score", "probabilities", "needs_review",
                             "truncated", "windows", "true_label", "correct", "slices"}


def test_errors_file_orders_mistakes_and_doubts(binary):
    _, result = binary
    records = read_jsonl(result.output / "errors.jsonl")
    mistakes = [r for r in records if r["kind"] == "confident_mistake"]
    doubts = [r for r in records if r["kind"] == "uncertain_correct"]
    assert len(mistakes) == min(50, result.metrics["slices"]["all"]["errors"])
    assert all(r["true_label"] != r["label"] and not r["correct"] for r in mistakes)
    assert all(r["true_label"] == r["label"] and r["correct"] for r in doubts) and doubts
    assert [r["score"] for r in mistakes] == sorted((r["score"] for r in mistakes), reverse=True)
    assert [r["score"] for r in doubts] == sorted(r["score"] for r in doubts)
    assert all(r["score"] == r["probabilities"][r["label"]] for r in records)
    assert all(f"class:{r['true_label']}" in r["slices"] for r in records)


def test_report_embeds_every_figure(binary):
    _, result = binary
    out = result.output
    pngs = figure_pngs(out)
    names = {p.stem for p in pngs}
    assert {"learning_curves", "confusion_matrix", "reliability", "coverage_accuracy",
            "slice_accuracy"} <= names
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in pngs)
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(pngs)
    assert "<h2>Behavioural tests</h2>" in page and "<h2>Review queue</h2>" in page


# ----------------------------------------------------------------- CLI and check


def test_cli_evaluate_with_user_slice_and_csv_queue(capsys, tmp_path, tiny_run_dir):
    data = tmp_path / "mine.csv"
    long_text = "the plot was great " * 20
    pd.DataFrame({
        "text": ["not a great plot", "a superb film!", "is it dull?", long_text,
                 "awful , simply awful", "what a lovely story"],
        "label": ["negative", "positive", "negative", "positive", "negative", "positive"],
    }).to_csv(data, index=False)
    decision = (tiny_run_dir / "decision.json").read_text()
    code, out, _ = run_cli(capsys, "evaluate", str(tiny_run_dir), "--data", str(data),
                           "--output", str(tmp_path / "out"), "--slice", r"plot=\bplot\b",
                           "--no-behavioral", "--review-queue", str(tmp_path / "q.csv"))
    assert code == 0 and "review threshold 0.8000 (run default)" in out
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    s = m["slices"]
    assert s["plot"]["count"] == 2 and s["truncated"]["count"] == 1  # lengths before cutting
    assert s["negation"]["count"] == 1 and s["question"]["count"] == 1
    assert m["behavioral"] == {"skipped": "turned off"}
    queue = pd.read_csv(tmp_path / "q.csv")
    assert list(queue.columns) == ["text", "label", "score", "p_negative", "p_positive",
                                   "needs_review", "truncated", "windows", "true_label", "correct",
                                   "slices"]
    assert len(queue) == m["review"]["queued"]
    assert (tiny_run_dir / "decision.json").read_text() == decision  # no target: unchanged


def test_check_broken_model_fails_loudly(capsys, tmp_path, tiny_run_dir):
    run = tmp_path / "broken"
    shutil.copytree(tiny_run_dir, run)
    make_always_positive(run)
    report = tmp_path / "behavioral.json"
    code, out, err = run_cli(capsys, "check", str(run), "--output", str(report),
                             "--max-failure-rate", "0.5")
    assert code == 1 and "FAILED" in err and "negative sentences" in err
    assert re.search(r"100\.0% +100/100 +MFT +negative sentences \[vocabulary\]", out)
    assert "'This hotel is annoying.' -> positive (1.00), expected negative" in out
    results = json.loads(report.read_text())
    rates = {t["name"]: t["failure_rate"] for t in results["tests"]}
    assert rates["negative sentences"] == rates["negated positive"] == 1.0
    assert rates["positive sentences"] == 0.0
    assert results["overall_failure_rate"] > 0.2  # INV tests cannot catch a constant answer
    assert results["capabilities"]["negation"] > 0.4
    assert "negative sentences" in results["failed"]


# ----------------------------------------------------------------- other tasks


@pytest.fixture(scope="module")
def three_label_runs(tmp_path_factory):
    """A multi-class and a multi-label run of a tiny 3-label BERT, one quick epoch each."""
    from sentitune.training import train

    root = tmp_path_factory.mktemp("three")
    model = build_tiny_model("bert", root / "bert3", num_labels=3)
    frame = make_sentiment_frame(48)
    multiclass = frame.assign(label=[
        "neutral" if i % 3 == 0 else label for i, label in enumerate(frame["label"])])
    multilabel = frame.assign(label=[
        f"{label}|neutral" if i % 3 == 0 else label for i, label in enumerate(frame["label"])])
    runs = {}
    for task, data in (("multiclass", multiclass), ("multilabel", multilabel)):
        data.to_csv(root / f"{task}.csv", index=False)
        runs[task] = train(tiny_config(model, root / f"{task}.csv", epochs=1.0, max_length=16),
                           root / task, progress=False).run_dir
    return runs


def test_multiclass_run(tmp_path, three_label_runs):
    result = evaluate(three_label_runs["multiclass"], output=tmp_path / "out")
    m = result.metrics
    assert "false_positives" not in m and "skipped" in m["behavioral"]
    n = len(validation_split(three_label_runs["multiclass"]))
    assert sum(s["count"] for name, s in m["slices"].items() if name.startswith("class:")) == n
    assert len(m["confusion_matrix"]) == 3


def test_multilabel_review_queue_matches_predict(tmp_path, three_label_runs):
    run = tmp_path / "run"
    shutil.copytree(three_label_runs["multilabel"], run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(run, output=tmp_path / "out", target_accuracy=0.3,
                          review_queue=tmp_path / "queue.jsonl")
    m = result.metrics
    assert any("no review threshold reaches" in str(w.message) for w in caught) == (
        not m["review"]["reached"])
    assert "note" in m["calibration"] and m["calibration"]["ece"] >= 0
    assert not any(name.startswith("class:") for name in m["slices"])
    val = validation_split(run)
    assert sum(s["count"] for n, s in m["slices"].items() if n.startswith("length:")) == len(val)
    review = m["review"]
    if review["reached"]:
        assert review["validation_accuracy_accepted"] >= 0.3
    else:
        assert review["validation_coverage"] == 0.0

    clf = Classifier.from_pretrained(run)  # with the threshold evaluate just saved
    texts = list(val["text"])
    flagged = [a["text"] for a in clf.predict(texts) if a["needs_review"]]
    queue = read_jsonl(result.review_queue)
    assert Counter(r["text"] for r in queue) == Counter(flagged)
    margins = [r["score"] for r in queue]
    assert margins == sorted(margins)
    assert all({"labels", "true_labels", "score", "probabilities", "slices"} <= set(r)
               for r in queue)


@pytest.mark.parametrize("scale", [0.5, 1e-3, 1e-6])
def test_multilabel_threshold_survives_float_rounding(scale):
    """Predict's rule, review when margin < (1 - t) / 2, accepts exactly what the target allows.

    Saving t = 1 - 2 * cut naively loses the bits of small margins: at scale 1e-3 the
    example exactly at the cut would go to review.
    """
    rng = np.random.default_rng(0)
    margins = rng.uniform(0, scale, 300)
    correct = rng.random(300) < 0.5 + margins / scale / 2  # wider margins are right more often
    for target in (0.6, 0.8, 0.95, 1.0):
        cut = threshold_for_target_accuracy(margins, correct, target)["threshold"]
        threshold = threshold_for_target(margins, correct, target, "multilabel")
        accepted = ~(margins < (1 - threshold) / 2)
        assert np.array_equal(accepted, margins >= cut), (scale, target)


# ----------------------------------------------------------------- bad input


def test_binary_only_options_on_multiclass_run(capsys, tmp_path, three_label_runs):
    run = str(three_label_runs["multiclass"])
    code, _, err = run_cli(capsys, "check", run)
    assert_one_line_error(code, err, "multiclass run (negative, neutral, positive)")
    code, _, err = run_cli(capsys, "evaluate", run, "--behavioral",
                           "--output", str(tmp_path / "out"))
    assert_one_line_error(code, err, "--behavioral", "multiclass run")
    assert not (tmp_path / "out").exists()
    assert not (three_label_runs["multiclass"] / "check").exists()


@pytest.mark.parametrize(
    ("rows", "options", "patterns"),
    [
        ({"text": [" ", None], "label": ["positive", "negative"]}, [], ["no rows left"]),
        ({"text": ["good", "bad", "fine"], "label": ["joy", "anger", "positive"]}, [],
         ["unknown label 'joy'", "expected one of: negative, positive"]),
        (None, ["--slice", "plot"], ["--slice expects NAME=REGEX"]),
        (None, ["--slice", "x=(unclosed"], ["invalid regex"]),
        (None, ["--slice", "truncated=long"], ["reserved"]),
        (None, ["--target-accuracy", "1.5"], ["must be in (0, 1]"]),
        (None, ["--review-queue", "queue.txt"], [".jsonl or .csv"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, tiny_run_dir, rows,
                                                  options, patterns):
    data = tmp_path / "data.csv"
    (pd.DataFrame(rows) if rows else make_sentiment_frame(6)).to_csv(data, index=False)
    decision = (tiny_run_dir / "decision.json").read_text()
    code, _, err = run_cli(capsys, "evaluate", str(tiny_run_dir), "--data", str(data),
                           "--output", str(tmp_path / "out"), "--target-accuracy", "0.9",
                           *options)
    assert_one_line_error(code, err, *patterns)
    assert not (tmp_path / "out").exists()
    assert (tiny_run_dir / "decision.json").read_text() == decision


def test_truncated_texts_go_to_review_when_the_run_says_so(capsys, tmp_path, tiny_run_dir):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    long_text = ("a superb film , simply lovely " * 30).strip()  # far over 32 tokens
    short = "a superb film"
    code, out, _ = run_cli(capsys, "predict", str(run), long_text, short)
    before = [json.loads(line) for line in out.splitlines()]
    assert before[0]["truncated"] and not before[1]["truncated"]

    data = tmp_path / "long.csv"
    pd.DataFrame({"text": [long_text, short, "awful , simply awful"],
                  "label": ["positive", "positive", "negative"]}).to_csv(data, index=False)
    code, _, _ = run_cli(capsys, "evaluate", str(run), "--data", str(data), "--output",
                         str(tmp_path / "out"), "--no-behavioral", "--review-truncated",
                         "--review-queue", str(tmp_path / "queue.jsonl"))
    assert code == 0
    assert json.loads((run / "decision.json").read_text())["review_truncated"] is True
    queue = read_jsonl(tmp_path / "queue.jsonl")
    assert long_text in [r["text"] for r in queue]
    assert all(r["needs_review"] for r in queue)

    code, out, _ = run_cli(capsys, "predict", str(run), long_text, short)
    after = [json.loads(line) for line in out.splitlines()]
    assert after[0]["needs_review"] and after[0]["score"] == before[0]["score"]
    assert after[1]["needs_review"] == before[1]["needs_review"]
    code, out, _ = run_cli(capsys, "predict", str(run), long_text, "--no-review-truncated")
    assert json.loads(out)["needs_review"] == before[0]["needs_review"]
