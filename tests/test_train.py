"""End to end on tiny random models: train → run directory → load → predict."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import run_cli, tiny_config

from sentitune.config import load_preset
from sentitune.dataset import load_splits
from sentitune.errors import SentituneError
from sentitune.inference.classifier import Classifier, length_batches
from sentitune.metrics import classification_metrics
from sentitune.run import Run
from sentitune.training import train

RUN_FILES = ["model/config.json", "model/model.safetensors", "model/tokenizer.json",
             "config.yaml", "labels.json", "decision.json", "history.csv", "curves.png",
             "metrics.json", "README.md"]


def test_run_directory_holds_the_contract(tiny_run_dir):
    for name in RUN_FILES:
        assert (tiny_run_dir / name).is_file(), name
    assert not (tiny_run_dir / "checkpoints").exists()
    metrics = json.loads((tiny_run_dir / "metrics.json").read_text())
    assert {"accuracy", "f1", "f1_macro", "precision", "recall"} <= set(metrics["validation"])
    assert metrics["validation"]["loss"] > 0
    assert metrics["selection_metric"] == "f1_macro"
    assert "task" not in metrics and "method" not in metrics  # stored once, elsewhere
    history = Run.open(tiny_run_dir).history()
    best = max(history, key=lambda row: row["val_f1_macro"])
    assert metrics["best_epoch"] == best["epoch"]
    assert metrics["best_epoch"] in (1, 2, 3)
    assert metrics["train_runtime_s"] > 0 and metrics["train_samples_per_s"] > 0
    with open(tiny_run_dir / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    model_config = json.loads((tiny_run_dir / "model/config.json").read_text())
    assert model_config["id2label"] == {"0": "negative", "1": "positive"}
    import yaml

    saved = yaml.safe_load((tiny_run_dir / "config.yaml").read_text())
    assert saved["training"]["seed"] == 7
    assert len(saved["data_fingerprint"]) == 16
    assert {"python", "torch", "transformers", "sentitune"} <= set(saved["versions"])


def test_tiny_model_learns_the_toy_task(tiny_run_dir):
    metrics = json.loads((tiny_run_dir / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] >= 0.75


def test_predict_shape_order_and_review_flag(tiny_run_dir):
    clf = Classifier.from_pretrained(tiny_run_dir)
    texts = ["a wonderful , superb film", "awful", "the acting is dreadful and dull " * 20, "ok"]
    results = clf.predict(texts, batch_size=2)
    assert [r["text"] for r in results] == texts
    for r in results:
        assert set(r) == {"text", "label", "score", "probabilities", "needs_review", "truncated",
                          "windows"}
        assert r["label"] in ("negative", "positive")
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-5
        assert r["needs_review"] == (r["score"] < 0.8)
    assert results[2]["truncated"] and not results[0]["truncated"]
    one_by_one = [clf.predict([t])[0]["score"] for t in texts]
    assert np.allclose(one_by_one, [r["score"] for r in results], atol=1e-5)


@pytest.mark.parametrize("max_padding", [None, 0.0, 0.25, 1.0])
def test_length_batches_cover_every_text_once_within_the_limits(max_padding):
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 130, size=200).tolist()
    batches = list(length_batches(lengths, 16, max_padding))
    assert sorted(np.concatenate(batches).tolist()) == list(range(200))
    assert all(1 <= len(batch) <= 16 for batch in batches)
    in_order = [lengths[i] for batch in batches for i in batch]
    assert in_order == sorted(lengths)
    if max_padding is None:
        assert [len(batch) for batch in batches] == [16] * 12 + [8]
        return
    for batch in batches:
        sizes = [lengths[i] for i in batch]
        assert len(sizes) == 1 or max(sizes) * len(sizes) <= (1 + max_padding) * sum(sizes)


def test_length_batches_split_a_mixed_micro_batch_by_length():
    # Short requests and one long review: the review goes alone, and 4,4,5 stop before 6
    # (6 x 4 = 24 padded tokens > 1.25 x 19 real ones).
    lengths = [4, 120, 6, 5, 7, 4]
    batches = [sorted(batch.tolist()) for batch in length_batches(lengths, 64, 0.25)]
    assert batches == [[0, 3, 5], [2, 4], [1]]
    assert [len(b) for b in length_batches(lengths, 64)] == [6]  # GPU: one call


def test_transformers_pipeline_agrees_with_predict(tiny_run_dir):
    from transformers import pipeline

    texts = ["a wonderful , superb film", "awful and boring", "what a lovely story"]
    pipe = pipeline("text-classification", model=str(tiny_run_dir / "model"))
    ours = Classifier.from_pretrained(tiny_run_dir).predict(texts)
    for theirs, mine in zip(pipe(texts), ours, strict=True):
        assert theirs["label"] == mine["label"]
        assert abs(theirs["score"] - mine["score"]) < 1e-4


def test_same_seed_same_metrics_other_seed_other_order(tmp_path, tiny_bert, sentiment_csv):
    first = train(tiny_config(tiny_bert, sentiment_csv), tmp_path / "a", progress=False)
    again = train(tiny_config(tiny_bert, sentiment_csv), tmp_path / "b", progress=False)
    other = train(tiny_config(tiny_bert, sentiment_csv, seed=8), tmp_path / "c", progress=False)
    assert first.metrics["validation"] == again.metrics["validation"]
    # Training loss of the first epoch: validation loss can reach 0 (machine epsilon) alike.
    first_epoch = [Run.open(r.run_dir).history()[0]["train_loss"] for r in (first, again, other)]
    assert first_epoch[0] == first_epoch[1] != first_epoch[2]


def test_distilbert_architecture_trains(tmp_path, tiny_distilbert, sentiment_csv):
    result = train(tiny_config(tiny_distilbert, sentiment_csv, epochs=1.0), tmp_path / "d",
                   progress=False)
    assert (result.run_dir / "model" / "model.safetensors").is_file()
    assert Classifier.from_pretrained(result.run_dir).predict(["great"])[0]["label"] in (
        "negative", "positive")


def test_existing_output_is_refused_and_a_failed_run_leaves_no_run(tmp_path, tiny_bert,
                                                                   sentiment_csv):
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(SentituneError, match="already exists"):
        train(tiny_config(tiny_bert, sentiment_csv), out, progress=False)
    failing = tmp_path / "failing"
    with pytest.raises(SentituneError, match="max-length 4096"):
        train(tiny_config(tiny_bert, sentiment_csv, max_length=4096), failing, progress=False)
    assert not failing.exists()


def test_resume_continues_from_checkpoint(tmp_path, tiny_bert, sentiment_csv, monkeypatch):
    from sentitune.run import Run

    out = tmp_path / "r"
    staging = out.with_name("r.partial")

    def interrupted(self):
        raise KeyboardInterrupt  # after the last checkpoint, before publishing

    monkeypatch.setattr(Run, "publish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny_bert, sentiment_csv, epochs=1.0), out, progress=False)
    assert not out.exists()
    assert any((staging / "checkpoints").glob("checkpoint-*"))
    with pytest.raises(SentituneError, match="unfinished run"):
        Run.open(staging)
    monkeypatch.undo()

    resumed = train(tiny_config(tiny_bert, sentiment_csv), out, resume=True, progress=False)
    fresh = train(tiny_config(tiny_bert, sentiment_csv), tmp_path / "fresh", progress=False)
    assert resumed.metrics["epochs_run"] == 2
    assert not staging.exists()

    def first_epoch_loss(run):
        with open(run / "history.csv") as handle:
            return float(next(csv.DictReader(handle))["val_loss"])

    # Epoch 1 came from the checkpoint (a 1-epoch schedule), not from a fresh start.
    assert first_epoch_loss(out) != first_epoch_loss(fresh.run_dir)


def test_early_stopping_stops(tmp_path, tiny_bert, sentiment_csv):
    # At this learning rate accuracy cannot move, so epoch 1 stays best and patience runs out.
    result = train(tiny_config(tiny_bert, sentiment_csv, epochs=8.0, learning_rate=1e-9,
                               patience=1, metric="accuracy"), tmp_path / "e", progress=False)
    assert result.metrics["epochs_run"] == 2
    assert result.metrics["best_epoch"] == 1


def test_temperature_is_folded_into_the_saved_model(tiny_run_dir):
    metrics = json.loads((tiny_run_dir / "metrics.json").read_text())
    decision = json.loads((tiny_run_dir / "decision.json").read_text())
    calibration = metrics["calibration"]
    assert decision["temperature"] == calibration["temperature"] > 0
    assert calibration["ece_after_temperature"] <= calibration["ece"] + 1e-9
    # The saved model gives calibrated probabilities: temperature scaling minimises the
    # NLL, so its validation loss is no worse than the best epoch's raw loss.
    with open(tiny_run_dir / "history.csv") as handle:
        rows = {int(r["epoch"]): float(r["val_loss"]) for r in csv.DictReader(handle)}
    assert metrics["validation"]["loss"] <= rows[metrics["best_epoch"]] + 1e-6
    # metrics.json scored logits / temperature; the saved weights must give those scores.
    assert abs(decision["temperature"] - 1) > 0.01  # otherwise folding would change nothing
    config = load_preset(str(tiny_run_dir / "config.yaml"))
    validation = load_splits(config.data, config.training.seed).validation
    probs = Classifier.from_pretrained(tiny_run_dir).predict_proba(list(validation["text"]))
    labels = json.loads((tiny_run_dir / "labels.json").read_text())["labels"]
    y_true = np.asarray(validation["label"], dtype=int)
    found = classification_metrics(y_true, probs, "binary", labels)
    for key in ("loss", "accuracy", "f1", "f1_macro", "precision", "recall"):
        assert found[key] == pytest.approx(metrics["validation"][key], abs=1e-5), key


def test_a_run_as_model_continues_from_its_fine_tuned_weights(capsys, tmp_path, tiny_run_dir,
                                                              sentiment_csv):
    import torch
    from transformers import AutoModelForSequenceClassification

    from sentitune.model import load_model

    saved = AutoModelForSequenceClassification.from_pretrained(tiny_run_dir / "model")
    started = load_model(str(tiny_run_dir), ["negative", "positive"], "binary")
    # Every weight, the trained head included, is the run's: no fresh initialisation.
    assert saved.state_dict().keys() == started.state_dict().keys()
    assert all(torch.equal(saved.state_dict()[name], weight)
               for name, weight in started.state_dict().items())
    code, _, _ = run_cli(capsys, "train", "--data", str(sentiment_csv), "--model",
                         str(tiny_run_dir), "--max-length", "32", "--epochs", "1",
                         "--output", str(tmp_path / "next"), "--quiet")
    assert code == 0
    assert Run.open(tmp_path / "next").config.model.model == str(tiny_run_dir)
