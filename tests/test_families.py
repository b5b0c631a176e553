"""Every model family end to end: train (full and LoRA), reload, predict, evaluate, export, serve.

Each family's tiny random model (conftest.build_family_model) has the real architecture and
a tokenizer of its own kind (WordPiece, byte-level BPE, Unigram), so every stage runs the
code paths the full-size models take.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import httpx
import pytest
from conftest import FAMILIES, tiny_config

from sentitune.evaluation.evaluator import evaluate
from sentitune.exporting.onnx import FP32_ATOL
from sentitune.exporting.run_export import export
from sentitune.inference.classifier import Classifier
from sentitune.inference.scoring import predict
from sentitune.model import HEAD_MODULES
from sentitune.server import ServeSettings, create_app, serve_in_thread
from sentitune.training import train

# The attention projections LoRA adapts by default, as each architecture names them.
LORA_MODULES = {
    "bert": {"query", "value"},
    "distilbert": {"q_lin", "v_lin"},
    "roberta": {"query", "value"},
    "albert": {"query", "value"},
    "deberta-v2": {"query_proj", "value_proj"},
}
TEXTS = ["a wonderful , moving film", "the acting is dull and tedious", "what a superb story",
         "i found it painful"]
# Random bodies need bold rates to learn the toy set in a few epochs; LoRA is judged on which
# weights it changed, since a random body leaves its low-rank updates little to work with.
RATES = {"full": 3e-3, "lora": 5e-2}


@pytest.fixture(scope="module", params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def runs(family, family_models, sentiment_csv, tmp_path_factory) -> dict[str, Path]:
    """One family's full and LoRA runs: method -> run directory."""
    out = tmp_path_factory.mktemp(f"family-{family}")
    # fp32 everywhere: `auto` picks bf16 on CPUs with bf16 units, and whether a random tiny
    # model learns in 4 epochs must not depend on the machine (test_precision covers bf16).
    return {method: train(tiny_config(family_models[family], sentiment_csv, method=method,
                                      learning_rate=rate, epochs=4.0, precision="fp32"),
                          out / method, progress=False).run_dir
            for method, rate in RATES.items()}


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_full_fine_tuning_learns(family, runs):
    metrics = json.loads((runs["full"] / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] >= 0.8
    config = json.loads((runs["full"] / "model" / "config.json").read_text())
    assert config["model_type"] == family
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_lora_changes_only_the_family_targets_and_the_head(family, runs, family_models):
    adapter = json.loads((runs["lora"] / "adapter" / "adapter_config.json").read_text())
    assert {name.rsplit(".", 1)[-1] for name in adapter["target_modules"]} == LORA_MODULES[family]
    base, merged = _weights(family_models[family]), _weights(runs["lora"] / "model")
    changed = {name for name, tensor in merged.items() if not tensor.equal(base[name])}
    head = {name for name in changed if name.split(".")[0] in HEAD_MODULES}
    adapted = {name.rsplit(".", 2)[-2] for name in changed - head}
    assert head and adapted == LORA_MODULES[family]
    assert all(name.endswith(".weight") for name in changed - head)  # biases stay frozen


@pytest.mark.parametrize("method", ["full", "lora"])
def test_saved_model_is_a_plain_pipeline_model_that_predicts_alike(runs, method):
    from transformers import pipeline

    run_dir = runs[method]
    classify = pipeline("text-classification", model=str(run_dir / "model"), device="cpu")
    expected = classify(TEXTS)
    ours = predict(run_dir, TEXTS)
    assert [p["label"] for p in ours] == [e["label"] for e in expected]
    assert [p["score"] for p in ours] == pytest.approx([e["score"] for e in expected], abs=1e-5)


def test_reloaded_adapter_predicts_like_the_merged_model(runs):
    merged = Classifier.from_pretrained(runs["lora"]).predict_proba(TEXTS)
    adapter = Classifier.from_pretrained(runs["lora"], backend="adapter").predict_proba(TEXTS)
    assert adapter == pytest.approx(merged, abs=1e-5)


def test_evaluate_reproduces_the_validation_accuracy(runs, tmp_path):
    for method, run_dir in runs.items():
        result = evaluate(run_dir, output=tmp_path / method, behavioral=False)
        trained = json.loads((run_dir / "metrics.json").read_text())["validation"]
        assert result.metrics["accuracy"] == pytest.approx(trained["accuracy"]), method
        assert (tmp_path / method / "report.html").is_file()


def test_onnx_fp32_and_int8_export_and_predict(runs):
    run_dir = runs["full"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random tiny model may miss the int8 agreement goal
        report = export(run_dir, quantize="int8").report
    assert report["max_abs_diff"] <= FP32_ATOL
    assert report["agreement"]["onnx"]["label_agreement"] == 1.0
    assert report["agreement"]["onnx-int8"]["label_agreement"] >= 0.9
    reference = predict(run_dir, TEXTS)
    for backend in ("onnx", "onnx-int8"):
        scored = predict(run_dir, TEXTS, backend=backend)
        assert [p["label"] for p in scored] == [p["label"] for p in reference], backend


def test_serves_the_same_predictions(runs):
    run_dir = runs["lora"]
    expected = predict(run_dir, TEXTS)
    app = create_app(Classifier.from_pretrained(run_dir), ServeSettings(api_key=None))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        single = client.post("/predict", json={"text": TEXTS[0]})
        batch = client.post("/predict/batch", json={"texts": TEXTS})
        info = client.get("/info").json()
    assert single.status_code == 200 and batch.status_code == 200
    assert single.json()["label"] == expected[0]["label"]
    answers = batch.json()["predictions"]
    assert [p["label"] for p in answers] == [p["label"] for p in expected]
    assert [p["score"] for p in answers] == pytest.approx([p["score"] for p in expected],
                                                          abs=1e-5)
    assert info["labels"] == ["negative", "positive"]
