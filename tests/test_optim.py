"""Optimizers (`--optimizer`) and layer-wise learning-rate decay (`--layer-decay`)."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import assert_one_line_error, run_cli, tiny_config

from sentitune.config import TrainingConfig
from sentitune.optim import build_optimizer, parameter_depth, parameter_groups


@pytest.fixture(scope="module")
def bert(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)


def test_depth_of_each_part():
    assert parameter_depth("bert.embeddings.word_embeddings.weight", 6) == 0
    assert parameter_depth("bert.encoder.layer.0.attention.self.query.weight", 6) == 1
    assert parameter_depth("distilbert.transformer.layer.5.ffn.lin1.bias", 6) == 6
    assert parameter_depth("base_model.model.bert.encoder.layer.2.output.dense.weight", 6) == 3
    assert parameter_depth("classifier.weight", 6) == 7
    assert parameter_depth("bert.pooler.dense.weight", 6) == 7


def test_layer_decay_scales_the_rate_by_depth(bert):
    groups = parameter_groups(bert, 1e-3, 0.01, 0.5, layers=2)
    rate = {name: g["lr"] for g in groups for name in g["names"]}
    decay = {name: g["weight_decay"] for g in groups for name in g["names"]}
    assert rate["classifier.weight"] == pytest.approx(1e-3)
    assert rate["bert.encoder.layer.1.output.dense.weight"] == pytest.approx(5e-4)
    assert rate["bert.encoder.layer.0.output.dense.weight"] == pytest.approx(2.5e-4)
    assert rate["bert.embeddings.word_embeddings.weight"] == pytest.approx(1.25e-4)
    # Biases and LayerNorm weights are not decayed; matrices are.
    assert decay["bert.encoder.layer.0.output.dense.bias"] == 0.0
    assert decay["bert.encoder.layer.0.output.LayerNorm.weight"] == 0.0
    assert decay["bert.encoder.layer.0.output.dense.weight"] == 0.01
    # Every trainable parameter is in exactly one group.
    names = [name for g in groups for name in g["names"]]
    assert sorted(names) == sorted(n for n, p in bert.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("name, kind", [("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD),
                                        ("adafactor", None)])
def test_each_optimizer_steps_the_model(bert, name, kind):
    from transformers.optimization import Adafactor

    settings = TrainingConfig(optimizer=name, learning_rate=1e-2, layer_decay=0.8)
    optimizer = build_optimizer(bert, settings)
    assert isinstance(optimizer, kind or Adafactor)
    before = bert.classifier.weight.detach().clone()
    inputs = {"input_ids": torch.tensor([[101, 2307, 102]]), "labels": torch.tensor([1])}
    bert(**inputs).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    assert not torch.equal(before, bert.classifier.weight)


def test_train_saves_the_optimizer_and_decay(tiny_bert, sentiment_csv, tmp_path):
    from sentitune.training import train

    result = train(tiny_config(tiny_bert, sentiment_csv, epochs=1.0, optimizer="adafactor",
                               layer_decay=0.9), tmp_path / "run", progress=False)
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())["training"]
    assert saved["optimizer"] == "adafactor" and saved["layer_decay"] == 0.9
    assert "optimizer adafactor, layer decay 0.9" in (result.run_dir / "README.md").read_text()


def test_sgd_defaults_to_its_own_rate(tiny_bert, sentiment_csv):
    from sentitune.config import SGD_LEARNING_RATE, resolved

    config = tiny_config(tiny_bert, sentiment_csv, optimizer="sgd", learning_rate=None)
    assert resolved(config).training.learning_rate == SGD_LEARNING_RATE


@pytest.mark.parametrize("flags, words", [
    (["--optimizer", "lamb"], ("--optimizer", "adafactor")),
    (["--layer-decay", "0"], ("--layer-decay", "(0, 1]")),
    (["--layer-decay", "1.5"], ("--layer-decay", "(0, 1]")),
])
def test_bad_input_is_one_line(capsys, tiny_bert, sentiment_csv, tmp_path, flags, words):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", str(sentiment_csv), "--model",
                           str(tiny_bert), "--output", str(out), *flags)
    assert_one_line_error(code, err, *words)
    assert not out.exists()


def test_without_layer_decay_the_groups_are_the_trainers(bert, tmp_path):
    """Same groups, same order: a checkpoint written with either optimizer set-up resumes."""
    from transformers import Trainer, TrainingArguments

    ours = parameter_groups(bert, 1e-3, 0.01, 1.0, layers=2)
    args = TrainingArguments(output_dir=str(tmp_path), weight_decay=0.01, use_cpu=True,
                             report_to=[])
    theirs = Trainer(model=bert, args=args).create_optimizer().param_groups
    assert [len(g["params"]) for g in ours] == [len(g["params"]) for g in theirs]
    for mine, trainer in zip(ours, theirs, strict=True):
        assert all(a is b for a, b in zip(mine["params"], trainer["params"], strict=True))
        assert mine["weight_decay"] == trainer["weight_decay"]


def test_a_run_with_layer_decay_resumes_its_optimizer(tiny_bert, sentiment_csv, tmp_path,
                                                      monkeypatch):
    from sentitune.run import Run
    from sentitune.training import train

    def interrupted(self):
        raise KeyboardInterrupt  # after the last checkpoint, before publishing

    settings = {"optimizer": "adafactor", "layer_decay": 0.8}
    monkeypatch.setattr(Run, "publish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny_bert, sentiment_csv, epochs=1.0, **settings), tmp_path / "r",
              progress=False)
    monkeypatch.undo()
    resumed = train(tiny_config(tiny_bert, sentiment_csv, **settings), tmp_path / "r",
                    resume=True, progress=False)
    assert resumed.metrics["epochs_run"] == 2


def test_tune_searches_layer_decay_and_optimizer_only_when_named():
    from sentitune.errors import SentituneError
    from sentitune.tuning import search_space

    assert not {"layer_decay", "optimizer"} & {p.name for p in search_space(None, "full")}
    named = {p.name: p for p in search_space("layer_decay,optimizer=adamw|adafactor", "full")}
    assert (named["layer_decay"].low, named["layer_decay"].high) == (0.7, 1.0)
    assert named["optimizer"].choices == ("adamw", "adafactor")
    with pytest.raises(SentituneError, match=r"\(0, 1\]"):
        search_space("layer_decay=0.5:1.2", "full")
    with pytest.raises(SentituneError, match="'lamb' is not one of"):
        search_space("optimizer=lamb", "full")
