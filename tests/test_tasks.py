"""Beyond binary: multi-class and multi-label data, training, thresholds and predictions.

Two tiny random models are trained once per module through the CLI (one multi-class, one
multi-label, both with `--class-weights auto`); every model test reads those runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re

import numpy as np
import pandas as pd
import pytest
from conftest import build_tiny_model

from sentitune.cli import main
from sentitune.config import DataConfig
from sentitune.dataset import Splits, load_eval_split, load_splits
from sentitune.errors import SentituneError
from sentitune.inference.classifier import Classifier
from sentitune.metrics import classification_metrics
from sentitune.run import Run
from sentitune.training import _weighted_loss, class_weights

# Each emotion has its own words, so a tiny model can learn which ones a text carries.
WORDS = {
    "anger": ["furious", "outraged", "livid", "enraged"],
    "fear": ["scared", "terrified", "afraid", "anxious"],
    "joy": ["delighted", "thrilled", "happy", "cheerful"],
    "sadness": ["gloomy", "heartbroken", "miserable", "tearful"],
}


def emotion_frame(n: int, labels: list[str], multilabel: bool, seed: int = 0) -> pd.DataFrame:
    """Texts carrying the words of one label (or, for multi-label, one or two labels)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        picked = [labels[i % len(labels)]]
        if multilabel and i % 3 == 0:
            picked.append(rng.choice([x for x in labels if x != picked[0]]))
        words = [word for label in picked for word in rng.sample(WORDS[label], 2)]
        rows.append((f"so {' '.join(words)}", "|".join(picked)))
    return pd.DataFrame(rows, columns=["text", "label"])


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def write(frame: pd.DataFrame, path):
    if path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False)
    return path


def train_cli(tmp, name: str, frame: pd.DataFrame, num_labels: int) -> tuple:
    model = build_tiny_model("bert", tmp / f"{name}-model", num_labels)
    data = write(frame, tmp / f"{name}.csv")
    run = tmp / f"{name}-run"
    code, out, err = cli("train", "--dataset", str(data), "--model", str(model), "--output",
                         str(run), "--quiet", "--max-length", "16", "--epochs", "3",
                         "--batch-size", "16", "--learning-rate", "1e-2", "--warmup-ratio", "0",
                         "--seed", "7", "--class-weights", "auto")
    assert code == 0, err
    return run, out


@pytest.fixture(scope="module")
def multiclass_run(tmp_path_factory):
    frame = emotion_frame(150, ["joy", "anger", "fear"], multilabel=False)
    return train_cli(tmp_path_factory.mktemp("multiclass"), "multiclass", frame, 3)


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    frame = emotion_frame(200, list(WORDS), multilabel=True)
    return train_cli(tmp_path_factory.mktemp("multilabel"), "multilabel", frame, 4)


def splits_of(path, **data) -> Splits:
    return load_splits(DataConfig(dataset=str(path), **data), seed=0)


# ------------------------------------------------------------------ data


def test_task_is_inferred_from_the_label_column(tmp_path):
    classes = emotion_frame(30, ["joy", "anger", "fear"], multilabel=False)
    splits = splits_of(write(classes, tmp_path / "classes.csv"))
    assert (splits.task, splits.labels) == ("multiclass", ["anger", "fear", "joy"])

    # Single labels mixed with pipe sets, and JSON lists: both are label sets.
    sets = emotion_frame(30, list(WORDS), multilabel=True)
    assert (sets["label"].str.contains("|", regex=False)).any()
    splits = splits_of(write(sets, tmp_path / "sets.csv"))
    assert (splits.task, splits.labels) == ("multilabel", sorted(WORDS))
    sets["label"] = sets["label"].str.split("|")
    from_lists = splits_of(write(sets, tmp_path / "sets.jsonl"))
    assert from_lists.task == "multilabel"
    assert from_lists.fingerprint() == splits.fingerprint()  # same rows, same label ids
    sizes = {len(ids) for ids in splits.train["label"]}
    assert sizes == {1, 2} and all(ids == sorted(ids) for ids in splits.train["label"])


def test_single_label_task_on_label_sets_is_an_error(tmp_path):
    path = write(emotion_frame(30, list(WORDS), multilabel=True), tmp_path / "sets.csv")
    with pytest.raises(SentituneError, match=r"holds several labels but the task is multiclass"):
        splits_of(path, task="multiclass")


def test_one_item_lists_carry_a_single_label_name_with_a_separator(tmp_path):
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(30)],
                          "label": [["arts, culture"], ["science"], ["sport"]] * 10})
    splits = splits_of(write(frame, tmp_path / "topics.jsonl"), task="multiclass")
    assert splits.labels == ["arts, culture", "science", "sport"]
    assert set(splits.train["label"]) == {0, 1, 2}


def test_multilabel_name_containing_a_separator_is_an_error(tmp_path):
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(30)],
                          "label": [["arts, culture", "science"], ["sport"], ["science"]] * 10})
    with pytest.raises(SentituneError, match=r"multi-label name 'arts, culture' contains"):
        splits_of(write(frame, tmp_path / "topics.jsonl"))


def test_builtin_multiclass_and_multilabel_datasets(data_dir_env):
    sst5 = load_splits(DataConfig(dataset="sst5", train_samples=100), seed=0)
    assert sst5.task == "multiclass" and len(sst5.validation) == 1101
    assert sst5.labels == ["very negative", "negative", "neutral", "positive", "very positive"]
    emotion = load_splits(DataConfig(dataset="emotion", train_samples=100), seed=0)
    assert emotion.labels == ["sadness", "joy", "love", "anger", "fear", "surprise"]
    assert (len(emotion.validation), len(emotion.test)) == (2000, 2000)
    go = load_splits(DataConfig(dataset="goemotions", train_samples=300), seed=0)
    assert go.task == "multilabel" and len(go.labels) == 28
    assert go.labels[0] == "admiration" and go.labels[27] == "neutral"
    # The local file holds "27" and "2,5" cells: every row becomes a list of ids.
    raw = pd.read_csv(data_dir_env / "goemotions" / "test.tsv", sep="\t", dtype=str,
                      quoting=3, keep_default_na=False)
    multi = raw["label"].str.contains(",")
    assert multi.mean() > 0.1
    assert [",".join(map(str, ids)) for ids in go.test["label"][multi]] == list(
        raw["label"][multi])


def test_builtins_from_the_hub_keep_columns_and_names(monkeypatch):
    """The hub copies name columns unlike the local files; the hub itself is faked here."""
    import datasets

    schemas = {
        "SetFit/sst5": {"text": ["bad", "great", "fine"], "label": [0, 4, 2],
                        "label_text": ["very negative", "very positive", "neutral"]},
        "google-research-datasets/go_emotions": {
            "text": ["thanks!", "wow, scary", "ok"], "labels": [[15], [14, 26], [27]],
            "id": ["a", "b", "c"]},
    }

    def load_dataset(hub_id, config=None):
        split = datasets.Dataset.from_dict(schemas[hub_id])
        return datasets.DatasetDict(train=split, validation=split, test=split)

    monkeypatch.delenv("SENTITUNE_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    sst5, _ = load_eval_split("sst5", "test", ["very negative", "negative", "neutral",
                                               "positive", "very positive"], "multiclass")
    assert list(sst5["text"]) == ["bad", "great", "fine"] and list(sst5["label"]) == [0, 4, 2]
    go = load_splits(DataConfig(dataset="goemotions"), seed=0)
    assert go.labels[14] == "fear" and sorted(map(sorted, go.test["label"])) == [
        [14, 26], [15], [27]]


def test_eval_split_names_builtin_ids_before_mapping_onto_a_run(data_dir_env):
    # A run whose labels are the emotion names sorted (as a user file gives them).
    names = sorted(["sadness", "joy", "love", "anger", "fear", "surprise"])
    frame, _ = load_eval_split("emotion", "test", names, "multiclass")
    raw = pd.read_parquet(data_dir_env / "emotion" / "test.parquet")
    builtin = ["sadness", "joy", "love", "anger", "fear", "surprise"]
    assert [names[i] for i in frame["label"]] == [builtin[i] for i in raw["label"]]


# ------------------------------------------------------------------ weights and metrics


def test_class_weights_auto_and_from_a_file(tmp_path):
    single = Splits(pd.DataFrame({"text": list("abcdef"), "label": [0, 0, 0, 0, 1, 2]}),
                    pd.DataFrame(), None, ["x", "y", "z"], "multiclass")
    assert np.allclose(class_weights(single, "auto"), [6 / (3 * 4), 6 / 3, 6 / 3])
    multi = Splits(pd.DataFrame({"text": list("abcd"), "label": [[0], [0, 1], [0], [2]]}),
                   pd.DataFrame(), None, ["x", "y", "z"], "multilabel")
    assert np.allclose(class_weights(multi, "auto"), [1 / 3, 3 / 1, 3 / 1])  # negatives/positives
    assert class_weights(multi, "none") is None

    by_name = tmp_path / "w.json"
    by_name.write_text(json.dumps({"z": 3, "x": 1, "y": 2.5}))
    assert list(class_weights(single, str(by_name))) == [1, 2.5, 3]
    for bad, message in [({"x": 1, "y": 1, "w": 1, "z": 1}, "unknown label"),
                         ([1, 0, 2], "positive numbers"), ([1, 2], "expected 3 weights"),
                         ("not json", "is not JSON")]:
        by_name.write_text(bad if isinstance(bad, str) else json.dumps(bad))
        with pytest.raises(SentituneError, match=message):
            class_weights(single, str(by_name))


def test_weighted_loss_matches_the_formulas():
    import torch

    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.5, 1.5, 0.0]])
    weights = np.array([1.0, 4.0, 0.5])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    p = torch.sigmoid(logits)
    by_hand = -(torch.tensor(weights) * targets * p.log() + (1 - targets) * (1 - p).log()).mean()
    multi = _weighted_loss(weights, "multilabel")({"logits": logits}, targets)
    assert torch.isclose(multi, by_hand.float(), atol=1e-6)

    classes = torch.tensor([0, 1])
    log_p = torch.log_softmax(logits, dim=1)
    w = torch.tensor(weights, dtype=torch.float32)[classes]
    by_hand = -(w * log_p[[0, 1], classes]).sum() / w.sum()
    single = _weighted_loss(weights, "multiclass")({"logits": logits}, classes)
    assert torch.isclose(single, by_hand, atol=1e-6)


def test_multilabel_metrics_by_hand():
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    probs = np.array([[0.9, 0.2, 0.6], [0.1, 0.4, 0.2], [0.7, 0.8, 0.1], [0.3, 0.1, 0.9]])
    m = classification_metrics(y, probs, "multilabel", ["a", "b", "c"],
                               thresholds=np.array([0.5, 0.3, 0.5]))
    # Predicted sets: {a,c} {b} {a,b} {c}: every row right.
    assert m["exact_match"] == 1.0 and m["hamming_loss"] == 0.0 and m["f1_micro"] == 1.0
    # 0.5 everywhere: the second row has no label over it, and the fallback answers its
    # most probable one, b: every row right again.
    m = classification_metrics(y, probs, "multilabel", ["a", "b", "c"])
    assert m["exact_match"] == 1.0 and m["cardinality"]["fallback_share"] == 0.25
    m = classification_metrics(y, probs, "multilabel", ["a", "b", "c"], fallback=False)
    # Without the fallback the second row loses b: 1 of 12 decisions wrong.
    assert m["exact_match"] == 0.75 and m["hamming_loss"] == pytest.approx(1 / 12)
    assert m["label_cardinality_true"] == 1.5 and m["label_cardinality_pred"] == 1.25
    assert m["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "f1-score": 2 / 3,
                                   "support": 2.0}


# ------------------------------------------------------------------ multi-class run


def test_multilabel_without_class_weights_is_warned_about(tmp_path):
    model = build_tiny_model("bert", tmp_path / "model", 4)
    data = write(emotion_frame(40, list(WORDS), multilabel=True), tmp_path / "data.csv")
    args = ["train", "--dataset", str(data), "--model", str(model), "--quiet", "--epochs", "1",
            "--max-length", "16"]
    code, _, err = cli(*args, "--output", str(tmp_path / "plain"))
    assert code == 0 and re.search(r"warning: .*only the frequent labels.*--class-weights auto",
                                   err)
    code, _, err = cli(*args, "--output", str(tmp_path / "weighted"), "--class-weights", "auto")
    assert code == 0 and "class weights" not in err


def test_multiclass_run_prints_its_task_and_keeps_names(multiclass_run):
    run, out = multiclass_run
    assert "task: multiclass (inferred); 3 labels: anger, fear, joy;" in out
    assert json.loads((run / "labels.json").read_text()) == {
        "task": "multiclass", "labels": ["anger", "fear", "joy"]}
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "anger", "1": "fear", "2": "joy"}
    metrics = json.loads((run / "metrics.json").read_text())
    validation = metrics["validation"]
    assert validation["accuracy"] > 0.6  # three classes: chance is 1/3
    assert set(validation["per_class"]) == {"anger", "fear", "joy"}
    assert np.array(validation["confusion_matrix"]).shape == (3, 3)
    assert np.array(validation["confusion_matrix"]).sum() == validation["n"]
    # The best epoch is picked by macro-F1 for multi-class tasks.
    history = pd.read_csv(run / "history.csv")
    assert metrics["best_epoch"] == int(history.loc[history["val_f1_macro"].idxmax(), "epoch"])


def test_multiclass_predictions_match_the_pipeline(multiclass_run):
    from transformers import pipeline

    run, _ = multiclass_run
    texts = ["i feel furious today", "i feel thrilled today", "i feel terrified and scared"]
    ours = Classifier.from_pretrained(run).predict(texts)
    for result in ours:
        assert set(result) == {"text", "label", "score", "probabilities", "needs_review",
                               "truncated", "windows"}
        assert list(result["probabilities"]) == ["anger", "fear", "joy"]
        assert result["score"] == pytest.approx(max(result["probabilities"].values()), abs=1e-6)
    theirs = pipeline("text-classification", model=str(run / "model"))(texts)
    assert [t["label"] for t in theirs] == [r["label"] for r in ours]
    assert np.allclose([t["score"] for t in theirs], [r["score"] for r in ours], atol=1e-4)


def test_threshold_is_refused_for_a_multiclass_run(multiclass_run):
    run, _ = multiclass_run
    code, _, err = cli("predict", str(run), "i feel happy", "--threshold", "0.3")
    assert "applies to multi-label runs; this run is multiclass" in one_line_error(code, err)


# ------------------------------------------------------------------ multi-label run


def test_multilabel_run_saves_tuned_thresholds(multilabel_run):
    run, out = multilabel_run
    assert "task: multilabel (inferred); 4 labels: anger, fear, joy, sadness;" in out
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert list(config["id2label"].values()) == sorted(WORDS)
    saved = json.loads((run / "decision.json").read_text())["label_thresholds"]
    assert len(saved) == 4 and all(0 < t < 1 for t in saved)
    assert Run(run).decision.label_thresholds == saved
    assert Classifier.from_pretrained(run).label_thresholds().tolist() == saved
    metrics = json.loads((run / "metrics.json").read_text())
    validation = metrics["validation"]
    # Predicting every label would score micro-F1 2 * 1.33 / (4 + 1.33) = 0.5 here.
    assert validation["f1_micro"] > 0.6
    # Epochs are scored with tuned thresholds too: the best epoch's macro-F1 in history is
    # the validation macro-F1 of the saved decision.
    history = pd.read_csv(run / "history.csv").set_index("epoch")
    assert metrics["best_epoch"] == history["val_f1_macro"].idxmax()
    assert history.loc[metrics["best_epoch"], "val_f1_macro"] == pytest.approx(
        validation["f1_macro"], abs=1e-6)
    assert {"f1_macro", "f1_samples", "exact_match", "hamming_loss", "label_cardinality_pred",
            "label_cardinality_true"} <= set(validation)
    assert set(validation["per_class"]) == set(WORDS)


def test_multilabel_predictions_use_the_thresholds(multilabel_run):
    run, _ = multilabel_run
    clf = Classifier.from_pretrained(run)
    texts = ["i feel furious and gloomy today", "i feel cheerful today", "nothing much"]
    cuts = dict(zip(clf.labels, clf.label_thresholds(), strict=True))
    for result in clf.predict(texts):
        assert set(result) == {"text", "labels", "score", "probabilities", "needs_review",
                               "truncated", "windows"}
        assert list(result["probabilities"]) == sorted(WORDS)
        passing = [label for label, p in result["probabilities"].items() if p >= cuts[label]]
        # No label passing its cut: the one nearest to passing it, in logits.
        nearest = max(cuts, key=lambda label: logit(result["probabilities"][label])
                      - logit(cuts[label]))
        assert result["labels"] == (passing or [nearest])
    # One threshold for all, between the second and third most probable: two labels.
    probs = clf.predict_proba(texts[:1])[0]
    second, third = np.sort(probs)[[-2, -3]]
    top_two = [label for label, p in zip(clf.labels, probs, strict=True) if p >= second]
    assert clf.predict(texts[:1], threshold=(second + third) / 2)[0]["labels"] == top_two
    with pytest.raises(SentituneError, match="between 0 and 1"):
        clf.predict(texts, threshold=1.5)


def logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def test_multilabel_run_records_cardinality_and_never_answers_no_label(multilabel_run,
                                                                        tmp_path):
    run, _ = multilabel_run
    metrics = json.loads((run / "metrics.json").read_text())
    card = metrics["validation"]["cardinality"]
    assert set(card) == {"true", "predicted", "ratio", "within_2x", "no_label_share",
                         "fallback_share"}
    assert card["predicted"] == metrics["validation"]["label_cardinality_pred"]
    assert card["ratio"] == pytest.approx(card["predicted"] / card["true"])
    assert card["within_2x"] == (0.5 <= card["ratio"] <= 2) and card["no_label_share"] == 0
    fit = metrics["threshold_fit"]
    assert fit["constraint_met"] == card["within_2x"]
    saved = np.asarray(json.loads((run / "decision.json").read_text())["label_thresholds"])
    assert isinstance(fit["logit_shift"], float) and saved.shape == (4,)
    clf = Classifier.from_pretrained(run)
    # "." is all but empty (an empty text is not scored: it is marked, see test_api).
    texts = ["nothing much", ".", "ok", "i feel furious and gloomy today", "the the the"]
    for threshold in (None, 0.999):  # the tuned cuts, and one cut no label reaches
        answers = clf.predict(texts, threshold=threshold)
        assert all(len(a["labels"]) >= 1 for a in answers)
    top = [max(a["probabilities"], key=a["probabilities"].get) for a in answers]
    assert [a["labels"] for a in answers] == [[label] for label in top]
    code, out, err = cli("evaluate", str(run), "--output", str(tmp_path / "eval"))
    assert code == 0, err
    shown = json.loads(out[:out.rindex("}") + 1])
    assert shown["label_cardinality_pred"] >= 1
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["cardinality"]["no_label_share"] == 0
    code, _, err = cli("predict", str(run), "anything", "--threshold", "0")
    assert code == 2 and "--threshold must be between 0 and 1" in one_line_error(code, err)


def test_multilabel_model_loads_in_the_pipeline(multilabel_run):
    from transformers import pipeline

    run, _ = multilabel_run
    texts = ["i feel furious and gloomy today", "i feel scared today"]
    ours = Classifier.from_pretrained(run).predict(texts)
    pipe = pipeline("text-classification", model=str(run / "model"), top_k=None,
                    function_to_apply="sigmoid")
    for theirs, mine in zip(pipe(texts), ours, strict=True):
        assert {t["label"]: round(t["score"], 4) for t in theirs} == pytest.approx(
            {label: round(p, 4) for label, p in mine["probabilities"].items()}, abs=1e-4)


def test_predict_cli_threshold_on_texts_and_files(multilabel_run, tmp_path):
    run, _ = multilabel_run
    texts = ["i feel cheerful today", "i feel scared and livid"]
    probs = Classifier.from_pretrained(run).predict_proba(texts)
    # One cut for all labels, between the two lowest probabilities: all but one label pass.
    low, next_low = np.sort(probs.ravel())[:2]
    cut = (low + next_low) / 2
    expected = ["|".join(label for label, p in zip(sorted(WORDS), row, strict=True) if p >= cut)
                for row in probs]
    code, out, err = cli("predict", str(run), texts[0], "--threshold", str(cut))
    assert code == 0, err
    assert "|".join(json.loads(out)["labels"]) == expected[0]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n")
    target = tmp_path / "out.csv"
    code, _, err = cli("predict", str(run), "--input", str(source), "--output", str(target),
                       "--threshold", str(cut), "--quiet")
    assert code == 0, err
    assert list(pd.read_csv(target, keep_default_na=False)["labels"]) == expected
    code, _, err = cli("predict", str(run), "--input", str(source), "--output",
                       str(tmp_path / "bad.csv"), "--threshold", "2")
    assert "--threshold must be between 0 and 1" in one_line_error(code, err)
    assert not (tmp_path / "bad.csv").exists()


def test_evaluating_a_multilabel_file_with_an_unknown_label(multilabel_run, tmp_path):
    run, _ = multilabel_run
    frame = emotion_frame(12, list(WORDS), multilabel=True)
    frame.loc[4, "label"] = "joy|boredom"
    data = write(frame, tmp_path / "eval.csv")
    code, _, err = cli("evaluate", str(run), "--data", str(data))
    line = one_line_error(code, err)
    assert "unknown label 'boredom'; expected one of: anger, fear, joy, sadness" in line


# ------------------------------------------------------------------ task errors from the CLI


@pytest.mark.parametrize(("task", "labels", "message"), [
    ("binary", ["joy", "anger", "fear"], "--task binary but"),
    ("multiclass", list(WORDS), "holds several labels but the task is multiclass"),
])
def test_train_refuses_a_task_the_labels_cannot_be(tmp_path, task, labels, message):
    data = write(emotion_frame(30, labels, multilabel=task == "multiclass"), tmp_path / "d.csv")
    code, _, err = cli("train", "--dataset", str(data), "--task", task, "--model", "minilm",
                       "--output", str(tmp_path / "run"), "--quiet")
    assert message in one_line_error(code, err)
    assert not (tmp_path / "run").exists()


def test_augmented_copies_keep_a_multilabel_rows_labels(tmp_path):
    model = build_tiny_model("bert", tmp_path / "model", 4)
    data = write(emotion_frame(60, list(WORDS), multilabel=True), tmp_path / "sets.csv")
    run = tmp_path / "run"
    code, _, err = cli("train", "--dataset", str(data), "--model", str(model), "--output",
                       str(run), "--quiet", "--max-length", "16", "--epochs", "1",
                       "--augment", "1", "--augment-methods", "mask")
    assert code == 0, err
    assert Run.open(run).facts["augmentation"]["copies_added"] > 0
