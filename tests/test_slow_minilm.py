"""Slow integration tests: the real bundled MiniLM on real SST-2 data."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from conftest import figure_pngs, make_always_positive, read_jsonl, validation_split

from sentitune.evaluation.evaluator import check, evaluate
from sentitune.inference.classifier import Classifier

pytestmark = pytest.mark.slow


def test_real_minilm_learns_well_above_chance(minilm_sst2_run):
    metrics = json.loads((minilm_sst2_run / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] > 0.70  # chance is 0.5 on balanced SST-2 dev
    clf = Classifier.from_pretrained(minilm_sst2_run)
    results = clf.predict(["An utterly delightful, moving film.",
                           "A dull, lifeless and painfully boring mess."])
    assert [r["label"] for r in results] == ["positive", "negative"]


def test_evaluate_real_minilm_on_its_validation_split(minilm_sst2_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(minilm_sst2_run, run)  # evaluate saves a new review threshold into it
    labels = json.loads((run / "labels.json").read_text())["labels"]
    val = validation_split(run)
    data = tmp_path / "validation.csv"
    pd.DataFrame({"text": val["text"], "label": [labels[y] for y in val["label"]]}).to_csv(
        data, index=False)
    result = evaluate(run, str(data), output=tmp_path / "eval", target_accuracy=0.97,
                      review_queue=tmp_path / "queue.jsonl")
    m = result.metrics
    assert m["n"] == len(val)

    # The report opens and embeds every figure, each also a PNG on disk.
    pngs = figure_pngs(result.output)
    assert len(pngs) >= 6 and all(p.is_file() for p in pngs)
    page = (result.output / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") == len(pngs)

    slices = m["slices"]
    for prefix in ("class:", "length:"):
        group = [s for name, s in slices.items() if name.startswith(prefix)]
        assert sum(s["count"] for s in group) == slices["all"]["count"] == len(val)
        assert sum(s["errors"] for s in group) == slices["all"]["errors"]
    assert slices["negation"]["count"] > 0

    assert m["calibration"]["ece_after_temperature"] <= m["calibration"]["ece"]

    # The saved threshold, applied by predict, delivers the target; the queue is the rest.
    answers = Classifier.from_pretrained(run).predict(list(val["text"]))
    accepted = [a["label"] == labels[y]
                for a, y in zip(answers, val["label"], strict=True) if not a["needs_review"]]
    assert m["review"]["reached"] and np.mean(accepted) >= 0.97
    queue = read_jsonl(result.review_queue)
    assert len(queue) + len(accepted) == len(val)
    assert Counter(r["text"] for r in queue) == Counter(
        a["text"] for a in answers if a["needs_review"])

    tests = m["behavioral"]["tests"]
    assert all(len(t["examples"]) == min(5, t["failures"]) for t in tests)


def test_broken_minilm_fails_behavioural_tests_loudly(minilm_sst2_run, tmp_path):
    real = check(minilm_sst2_run, tmp_path / "real.json").results
    broken_run = tmp_path / "broken"
    shutil.copytree(minilm_sst2_run, broken_run)
    make_always_positive(broken_run)
    broken = check(broken_run, max_failure_rate=0.5)
    rates = {t["name"]: t["failure_rate"] for t in broken.results["tests"]}
    real_rates = {t["name"]: t["failure_rate"] for t in real["tests"]}
    assert rates["negative sentences"] == rates["negated positive"] == 1.0
    assert real_rates["negative sentences"] <= 0.5 and real_rates["positive sentences"] <= 0.5
    assert "negative sentences" in broken.failed
    assert (broken_run / "check" / "behavioral.json").is_file()


def test_real_minilm_int8_export_follows_torch_far_closer_than_plain_int8(minilm_sst2_run,
                                                                           tmp_path):
    pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from sentitune.exporting.run_export import export
    from sentitune.metrics import agreement
    from sentitune.run import INT8_NAME, ONNX_NAME

    ours, plain = tmp_path / "ours", tmp_path / "plain"
    shutil.copytree(minilm_sst2_run, ours)  # export writes RUN/onnx
    report = export(ours, quantize="int8").report
    assert report["int8_calibration_texts"] == 256  # SST-2 training sentences
    assert report["agreement"]["onnx"]["label_agreement"] == 1.0
    # The baseline: what quantize_dynamic alone makes of the same fp32 graph.
    shutil.copytree(ours, plain)
    quantize_dynamic(ours / "onnx" / ONNX_NAME, plain / "onnx" / INT8_NAME,
                     weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                     per_channel=True)
    texts = list(validation_split(ours)["text"])
    reference = Classifier.from_pretrained(ours).predict_proba(texts)
    errors = {}
    for name, run in {"ours": ours, "plain": plain}.items():
        probs = Classifier.from_pretrained(run, backend="onnx-int8").predict_proba(texts)
        errors[name] = float(np.abs(probs - reference).max(axis=1).mean())
        if name == "ours":
            assert agreement(reference, probs)["label_agreement"] >= 0.98
    assert errors["ours"] < errors["plain"] / 2
