"""LoRA: the right modules adapted, the head trained and saved, reloads that predict alike."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import SHARED, assert_one_line_error, run_cli, tiny_config

from sentitune.config import TrainingConfig, load_preset
from sentitune.dataset import load_splits
from sentitune.inference.classifier import Classifier
from sentitune.metrics import classification_metrics
from sentitune.model import apply_lora, load_model, parameter_counts
from sentitune.run import Run
from sentitune.training import train

TEXTS = ["a wonderful , superb film", "awful and boring", "what a lovely story",
         "the acting is dreadful and dull", "i found it charming", "ok"]
LABELS = ["negative", "positive"]
# Per architecture: the modules LoRA adapts by default, the head trained in full, the rank.
EXPECTED = {
    "bert": ({"query", "value"}, {"classifier"}, 8),
    "distilbert": ({"q_lin", "v_lin"}, {"pre_classifier", "classifier"}, 4),
}
HIDDEN, LAYERS = 32, 2  # the tiny models of conftest


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory, tiny_bert, tiny_distilbert, sentiment_csv):
    """One LoRA run per architecture, with the trained model still in memory.

    BERT from flags with the default rank; DistilBERT from a YAML preset with rank 4.
    """
    out = tmp_path_factory.mktemp("lora")
    preset = out / "distilbert-lora.yaml"
    preset.write_text(
        f"data: {{dataset: '{sentiment_csv}', max_length: 32}}\n"
        f"model: {{model: '{tiny_distilbert}'}}\n"
        "training: {method: lora, lora_r: 4, lora_alpha: 8, epochs: 1, batch_size: 16, "
        "learning_rate: 0.01, warmup_ratio: 0, seed: 7}\n")
    return {
        "bert": train(tiny_config(tiny_bert, sentiment_csv, method="lora", epochs=1.0),
                      out / "bert", progress=False),
        "distilbert": train(load_preset(str(preset)), out / "distilbert", progress=False),
    }


def logits_of(model, run_dir) -> np.ndarray:
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
    with torch.no_grad():
        return model.eval()(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.numpy()


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_reloaded_lora_predicts_exactly_like_the_trained_model(kind, lora_runs, tmp_path,
                                                               request):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    result = lora_runs[kind]
    base = request.getfixturevalue(f"tiny_{kind}")
    run = shutil.copytree(result.run_dir, tmp_path / "run")
    trained = logits_of(result.model, run)

    targets, head, rank = EXPECTED[kind]
    adapter_config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == rank
    assert {name.rsplit(".", 1)[-1] for name in adapter_config["target_modules"]} == targets
    assert head <= set(adapter_config["modules_to_save"])  # peft adds `score` for other heads
    # Training moved the model away from its base, so agreeing below means something.
    assert np.abs(logits_of(load_model(str(base), LABELS, "binary"), run) - trained).max() > 1e-3

    from_adapter = PeftModel.from_pretrained(load_model(str(base), LABELS, "binary"),
                                             run / "adapter")
    merged = AutoModelForSequenceClassification.from_pretrained(run / "model")
    np.testing.assert_allclose(logits_of(from_adapter, run), trained, atol=1e-5)
    np.testing.assert_allclose(logits_of(merged, run), trained, atol=1e-5)

    from_run_dir, _ = Classifier.from_pretrained(run).logits(TEXTS)  # model/ (merged)
    shutil.rmtree(run / "model")
    from_adapter_dir, _ = Classifier.from_pretrained(run).logits(TEXTS)  # adapter/ alone
    np.testing.assert_allclose(from_run_dir, trained, atol=1e-5)
    np.testing.assert_allclose(from_adapter_dir, trained, atol=1e-5)


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_only_adapters_and_head_train(kind, lora_runs):
    metrics = lora_runs[kind].metrics
    rank = EXPECTED[kind][2]
    lora = LAYERS * 2 * (HIDDEN * rank + rank * HIDDEN)  # A and B of two modules per layer
    head = HIDDEN * 2 + 2 + (HIDDEN * HIDDEN + HIDDEN if kind == "distilbert" else 0)
    assert metrics["trainable_params"] == lora + head
    assert metrics["total_params"] > 1_000_000
    assert Run.open(lora_runs[kind].run_dir).config.training.method == "lora"


def test_temperature_is_folded_into_the_saved_lora_head(lora_runs, tmp_path):
    result = lora_runs["bert"]
    temperature = result.metrics["calibration"]["temperature"]
    assert abs(temperature - 1) > 0.01  # otherwise folding it in would change nothing
    config = load_preset(str(result.run_dir / "config.yaml"))
    validation = load_splits(config.data, config.training.seed).validation
    y_true = np.asarray(validation["label"], dtype=int)
    adapter_only = shutil.copytree(result.run_dir, tmp_path / "adapter-only")
    shutil.rmtree(adapter_only / "model")
    # metrics.json scored logits / temperature; the saved weights must give those scores.
    for run in (result.run_dir, adapter_only):
        probs = Classifier.from_pretrained(run).predict_proba(list(validation["text"]))
        loss = classification_metrics(y_true, probs, "binary", LABELS)["loss"]
        assert loss == pytest.approx(result.metrics["validation"]["loss"], abs=1e-5)


def test_all_linear_adapts_every_body_layer_and_never_the_head(tiny_distilbert):
    model = load_model(str(tiny_distilbert), LABELS, "binary")
    peft_model = apply_lora(model, TrainingConfig(method="lora", lora_targets="all-linear"))
    adapted = [name for name, module in peft_model.named_modules() if hasattr(module, "lora_A")]
    assert {name.rsplit(".", 1)[-1] for name in adapted} == {
        "q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"}
    assert len(adapted) == LAYERS * 6
    assert not any("classifier" in name for name in adapted)


def test_short_target_names_never_reach_into_the_head():
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    # RoBERTa's head has its own `dense` layer, which a plain suffix match would adapt.
    model = RobertaForSequenceClassification(RobertaConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=40, num_labels=2))
    peft_model = apply_lora(model, TrainingConfig(method="lora", lora_targets="dense"))
    adapted = [name for name, module in peft_model.named_modules() if hasattr(module, "lora_A")]
    assert any(name.endswith("attention.output.dense") for name in adapted)
    assert not any("classifier" in name for name in adapted)


def test_lora_on_bert_base_trains_under_one_percent():
    config_path = SHARED / "models" / "bert-base-uncased" / "config.json"
    if not config_path.is_file():
        pytest.skip(f"{config_path} not found")
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig.from_json_file(config_path)
    config.num_labels = 2
    model = apply_lora(BertForSequenceClassification(config), TrainingConfig(method="lora"))
    trainable, total = parameter_counts(model)
    print(f"\nLoRA r=8 (query, value) on BERT-base: {trainable:,} of {total:,} parameters "
          f"trainable ({trainable / total:.2%})")
    assert trainable == 12 * 2 * (768 * 8 * 2) + (768 * 2 + 2)  # adapters + head
    assert trainable / total < 0.01


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lora-targets", "query,attn_proj"],
         "unknown LoRA target module(s) attn_proj; this model's linear layers outside the "
         "classification head (always trained in full): dense, key, query, value, or all-linear"),
        (["--lora-targets", "classifier"], "unknown LoRA target module(s) classifier"),
        (["--lora-r", "-2"], "--lora-r must be > 0, got -2"),
    ],
)
def test_lora_bad_input(capsys, tmp_path, tiny_bert, sentiment_csv, extra, message):
    from conftest import assert_one_line_error, run_cli

    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--dataset", str(sentiment_csv), "--model",
                           str(tiny_bert), "--method", "lora", "--output", str(out), "--quiet",
                           *extra)
    assert_one_line_error(code, err, message)
    assert not out.exists() and not (tmp_path / "run.partial").exists()


def test_lora_options_with_full_method_warn(capsys, tmp_path, tiny_bert, sentiment_csv):
    from conftest import run_cli

    code, _, err = run_cli(capsys, "train", "--data", str(sentiment_csv), "--model",
                           str(tiny_bert), "--lora-r", "4", "--lora-targets", "key",
                           "--epochs", "1", "--output", str(tmp_path / "run"), "--quiet")
    assert code == 0
    assert "warning: --lora-r, --lora-targets ignored: --method is full" in err
    assert not (tmp_path / "run" / "adapter").exists()


def test_adapter_only_run_with_three_labels_loads_its_own_head(tmp_path, tiny_bert):
    import pandas as pd

    path = tmp_path / "three.csv"
    words = {"sad": "gloomy", "calm": "quiet", "glad": "sunny"}
    rows = [(f"a {word} day {i}", label) for i in range(20) for label, word in words.items()]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    result = train(tiny_config(tiny_bert, path, method="lora", merge_lora=False, epochs=1.0),
                   tmp_path / "run", progress=False)
    assert not (result.run_dir / "model").exists()
    clf = Classifier.from_pretrained(result.run_dir)
    assert clf.labels == ["calm", "glad", "sad"]
    probs = clf.predict_proba(["a gloomy day", "a sunny day"])
    assert probs.shape == (2, 3)
    trained = result.model.eval()
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(result.run_dir / "adapter")
    enc = tokenizer(["a gloomy day", "a sunny day"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = torch.softmax(trained(**enc).logits, dim=-1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_an_adapter_only_run_is_refused_as_a_starting_model(capsys, lora_runs, tmp_path,
                                                            sentiment_csv):
    run = shutil.copytree(lora_runs["bert"].run_dir, tmp_path / "run")
    shutil.rmtree(run / "model")  # what a --no-merge-lora run holds
    code, _, err = run_cli(capsys, "train", "--data", str(sentiment_csv), "--model", str(run),
                           "--output", str(tmp_path / "next"))
    assert_one_line_error(code, err, "LoRA adapter", "--merge-lora")
    assert not (tmp_path / "next").exists() and not (tmp_path / "next.partial").exists()
