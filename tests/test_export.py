"""ONNX export and the ONNX Runtime backend, on the tiny random models from conftest.

Each model is exported once per module; the tests then feed batches of other sizes and
lengths than the export saw, so a graph with a frozen axis or a wrongly traced mask fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_model

from sentitune.errors import SentituneError
from sentitune.exporting.run_export import export_onnx
from sentitune.inference.backends import OnnxBackend
from sentitune.metrics import agreement
from sentitune.run import INT8_NAME, ONNX_NAME

pytest.importorskip("onnxruntime")


def _tiny_multilabel(out: Path) -> Path:
    build_tiny_model("bert", out, num_labels=3)
    config = json.loads((out / "config.json").read_text())
    config["problem_type"] = "multi_label_classification"
    (out / "config.json").write_text(json.dumps(config))
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_bert, tiny_distilbert) -> dict[str, tuple[Path, Path, dict]]:
    """kind -> (model_dir, out_dir, export result); DistilBERT gets no int8 graph."""
    root = tmp_path_factory.mktemp("onnx")
    multilabel = _tiny_multilabel(root / "multilabel-model")
    result = {}
    for kind, model_dir, quantize in [
        ("bert", tiny_bert, "int8"),
        ("distilbert", tiny_distilbert, None),
        ("multilabel", multilabel, "int8"),
    ]:
        out = root / kind
        result[kind] = (model_dir, out, export_onnx(model_dir, out, quantize=quantize))
    return result


def _random_batch(batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
    """Token ids with per-row padding; token_type_ids always present, as a BERT tokenizer gives."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, length + 1, size=batch)
    lengths[0] = length  # one row fills the batch, as after padding=True
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(1000, 30000, size=(batch, length)) * mask
    types = (np.arange(length)[None, :] >= lengths[:, None] // 2).astype(np.int64) * mask
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


@pytest.mark.parametrize("kind", ["bert", "distilbert", "multilabel"])
def test_fp32_graph_matches_torch_for_any_batch_and_length(exported, kind):
    from transformers import AutoModelForSequenceClassification

    model_dir, out, result = exported[kind]
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    backend = OnnxBackend(out / ONNX_NAME, num_threads=1)
    assert result["max_abs_diff"] < 1e-4
    for seed, (batch, length) in enumerate([(1, 3), (5, 17), (9, 70)]):
        encoded = _random_batch(batch, length, seed)
        logits = backend.logits(encoded)  # token_type_ids too: DistilBERT's graph drops it
        assert logits.dtype == np.float32 and logits.shape == (batch, result["num_labels"])
        with torch.no_grad():
            inputs = {name: torch.from_numpy(encoded[name]) for name in backend.input_names}
            expected = model(**inputs).logits.numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_graph_inputs_follow_the_architecture(exported):
    assert OnnxBackend(exported["bert"][1] / ONNX_NAME).input_names == (
        "input_ids",
        "token_type_ids",
        "attention_mask",
    )
    # The conftest DistilBERT keeps a BERT tokenizer that emits token_type_ids; forward() has none.
    assert OnnxBackend(exported["distilbert"][1] / ONNX_NAME).input_names == (
        "input_ids",
        "attention_mask",
    )
    assert exported["multilabel"][2]["multi_label"] is True
    # Multi-label int8 agreement compares the whole set of labels at >= 0.5 per text.
    assert exported["multilabel"][2]["int8_agreement"]["n"] == 8
    assert exported["bert"][2]["multi_label"] is False


def test_int8_graph_agrees_with_fp32_on_most_inputs(exported):
    _, out, result = exported["bert"]
    assert result["int8_path"] == str(out / INT8_NAME)
    assert result["int8_calibration_texts"] == 4  # no texts given: the built-in sentences
    encoded = _random_batch(64, 24, seed=3)
    fp32 = OnnxBackend(out / ONNX_NAME, num_threads=1).logits(encoded)
    int8 = OnnxBackend(out / INT8_NAME, num_threads=1).logits(encoded)
    softmax = [np.exp(x) / np.exp(x).sum(axis=1, keepdims=True) for x in (fp32, int8)]
    report = agreement(*softmax)
    assert report["n"] == 64
    assert report["label_agreement"] >= 0.9
    assert report["max_prob_diff"] < 0.05


def _token_wise_matmuls(onnx_file: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(onnx_file)).graph
    weights = {tensor.name for tensor in graph.initializer}
    return [node.name for node in graph.node
            if node.op_type == "MatMul" and node.input[1] in weights]


def test_int8_quantizes_the_token_wise_matmuls_and_keeps_the_head_fp32(exported):
    import onnx

    _, out, _ = exported["bert"]
    int8 = [node.name for node in onnx.load(str(out / INT8_NAME)).graph.node
            if node.op_type == "MatMulInteger"]
    # 2 layers x (query, key, value, attention output, feed-forward in, feed-forward out)
    assert len(int8) == 12 == len(_token_wise_matmuls(out / ONNX_NAME))
    assert all("/encoder/" in name for name in int8)  # not the pooler, not the classifier
    assert "int8-source.onnx" not in {path.name for path in out.iterdir()}


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_int8_rewrite_is_exact_before_quantization(kind, tiny_bert, tiny_distilbert):
    from transformers import AutoModelForSequenceClassification

    from sentitune.exporting.int8 import _int8_ready, _Int8ReadyLinear

    model_dir = {"bert": tiny_bert, "distilbert": tiny_distilbert}[kind]
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if kind == "bert" else [])
    calibration = [{k: v for k, v in _random_batch(8, 20, seed=1).items() if k in names}]
    ready = _int8_ready(model, calibration)
    rewritten = [m for m in ready.modules() if isinstance(m, _Int8ReadyLinear)]
    assert len(rewritten) == 12  # every token-wise Linear; pre-classifier, pooler, head stay
    for seed, (batch, length) in enumerate([(1, 3), (6, 40)]):
        encoded = {k: torch.from_numpy(v) for k, v in _random_batch(batch, length, seed).items()
                   if k in names}
        with torch.no_grad():
            torch.testing.assert_close(ready(**encoded).logits, model(**encoded).logits,
                                       atol=1e-5, rtol=1e-4)


def test_int8_export_resists_outlier_channels(tmp_path, tiny_bert):
    """Trained transformers grow a few huge activation channels; plain int8 loses precision."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification

    model_dir = tmp_path / "outliers"
    shutil.copytree(tiny_bert, model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        for name, module in model.named_modules():
            # Not the last LayerNorm: a saturated pooler would hide every error.
            if isinstance(module, torch.nn.LayerNorm) and "layer.1.output" not in name:
                module.weight[3], module.weight[7] = 100.0, -60.0
    model.save_pretrained(model_dir)
    texts = ["the film was great", "a dull , tedious story that never ends", "i found it charming"]
    out = tmp_path / "onnx"
    export_onnx(model_dir, out, quantize="int8", calibration_texts=texts * 10)
    plain = tmp_path / "plain.int8.onnx"  # ONNX Runtime alone, on the same MatMuls
    quantize_dynamic(out / ONNX_NAME, plain, weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"],
                     nodes_to_quantize=_token_wise_matmuls(out / ONNX_NAME))
    encoded = _random_batch(64, 24, seed=3)
    fp32 = OnnxBackend(out / ONNX_NAME).logits(encoded)
    ours = np.abs(OnnxBackend(out / INT8_NAME).logits(encoded) - fp32).mean()
    baseline = np.abs(OnnxBackend(plain).logits(encoded) - fp32).mean()
    assert ours < baseline / 2


def test_int8_export_keeps_quantize_dynamic_advice_out_of_the_logs(tmp_path, tiny_bert, caplog):
    import logging

    handlers = list(logging.getLogger().handlers)
    with caplog.at_level(logging.INFO):
        export_onnx(tiny_bert, tmp_path / "onnx", quantize="int8")
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()]
    assert logging.getLogger().handlers == handlers
    logging.getLogger("sentitune.test").warning("still on")  # logging works again afterwards
    assert caplog.records[-1].getMessage() == "still on"


def test_agreement_compares_argmax_or_thresholded_label_sets():
    reference = np.array([[0.9, 0.6, 0.1], [0.2, 0.7, 0.4]])
    candidate = np.array([[0.8, 0.4, 0.1], [0.1, 0.8, 0.45]])
    # Single-label: both rows keep their argmax.
    assert agreement(reference, candidate) == pytest.approx(
        {"label_agreement": 1.0, "max_prob_diff": 0.2, "n": 2}
    )
    # Multi-label: row 0 loses its second label at 0.5, so only row 1 agrees.
    assert agreement(reference, candidate, multi_label=True)["label_agreement"] == 0.5


def test_model_dir_without_weights_fails_and_leaves_no_output(tmp_path, tiny_bert):
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in tiny_bert.iterdir():
        if item.suffix != ".safetensors":
            (broken / item.name).write_bytes(item.read_bytes())
    with pytest.raises(SentituneError, match="has no weights; sentitune loads safetensors only"):
        export_onnx(broken, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


def test_failure_mid_export_removes_the_partial_files(tmp_path, tiny_bert, monkeypatch):
    def fail(*_args):
        raise RuntimeError("disk full")

    monkeypatch.setattr("sentitune.exporting.run_export.quantize_int8", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export_onnx(tiny_bert, tmp_path / "out", quantize="int8")
    assert list(tmp_path.iterdir()) == []


def test_export_again_replaces_the_earlier_one(tmp_path, tiny_distilbert):
    out = tmp_path / "out"
    out.mkdir()  # an empty folder is fine too
    export_onnx(tiny_distilbert, out)
    (out / ONNX_NAME).write_bytes(b"stale")
    export_onnx(tiny_distilbert, out)
    assert OnnxBackend(out / ONNX_NAME).input_names == ("input_ids", "attention_mask")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no hidden leftovers


def test_refuses_to_replace_a_folder_that_is_not_an_export(tmp_path, tiny_bert):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SentituneError, match="does not hold an earlier export"):
        export_onnx(tiny_bert, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("model_dir", "kwargs", "message"),
    [
        ("missing", {}, "no config.json"),
        ("tiny", {"quantize": "int4"}, "unknown quantization"),
    ],
)
def test_user_errors(tmp_path, tiny_bert, model_dir, kwargs, message):
    path = tiny_bert if model_dir == "tiny" else tmp_path / model_dir
    with pytest.raises(SentituneError, match=message):
        export_onnx(path, tmp_path / "out", **kwargs)


def test_missing_onnxruntime_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(SentituneError, match=r"sentitune\[onnx\]"):
        OnnxBackend(tmp_path / "model.onnx")


def test_backend_names_a_missing_input(exported):
    backend = OnnxBackend(exported["bert"][1] / ONNX_NAME)
    encoded = _random_batch(2, 5, seed=0)
    del encoded["token_type_ids"]
    with pytest.raises(SentituneError, match="token_type_ids"):
        backend.logits(encoded)


def test_int8_calibrates_on_the_runs_own_texts_without_the_data_env(
        tmp_path, tiny_bert, data_dir_env, monkeypatch, capsys):
    """Without $SENTITUNE_DATA_DIR export once calibrated int8 on 4 built-in sentences."""
    from conftest import run_cli, tiny_config

    from sentitune.exporting.int8 import CALIBRATION_TEXTS
    from sentitune.training import train

    run = train(tiny_config(tiny_bert, "sst2", train_samples=300, val_samples=40, epochs=1.0),
                tmp_path / "sst2", progress=False).run_dir
    monkeypatch.delenv("SENTITUNE_DATA_DIR")
    code, out, err = run_cli(capsys, "export", str(run), "--quantize", "int8")
    assert code == 0, err
    report = json.loads(out)
    assert report["int8_calibration_texts"] == min(CALIBRATION_TEXTS, 300 - 0) > 4
    assert report["agreement_texts"] == "sst2 (validation)"
    assert "quantizing to int8, calibrated on" in err  # progress, on stderr


def test_int8_without_the_runs_texts_is_refused(tmp_path, tiny_bert, capsys):
    from conftest import make_sentiment_frame, run_cli, tiny_config

    from sentitune.training import train

    data = tmp_path / "gone.csv"
    make_sentiment_frame(80).to_csv(data, index=False)
    run = train(tiny_config(tiny_bert, data, epochs=1.0), tmp_path / "run",
                progress=False).run_dir
    data.unlink()
    code, _, err = run_cli(capsys, "export", str(run), "--quantize", "int8", "--quiet")
    assert code == 2 and err.startswith("error: int8 needs") and "file not found" in err
    assert not (run / "onnx").exists()
    code, _, err = run_cli(capsys, "export", str(run), "--quiet")  # fp32: said, not silent
    assert code == 0 and err.startswith("warning: agreement measured on built-in sentences")
