"""What you train is what you serve: one preprocessing, the training column, defaults that
learn, and warnings when a model did not."""

import warnings

import pandas as pd
import pytest
from conftest import make_sentiment_frame, tiny_config

import sentitune
from sentitune.config import make_config, resolved
from sentitune.run import Run


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_every_backend_applies_the_runs_cleaning(tiny_run_dir, backend):
    if backend == "onnx":
        sentitune.export(tiny_run_dir)
    raw = ["<b>A superb</b> film<br /><br />simply   lovely &amp; moving",
           "awful<br />and dull"]
    clean = ["A superb film simply lovely & moving", "awful and dull"]
    got = sentitune.predict(tiny_run_dir, raw, backend=backend)
    want = sentitune.predict(tiny_run_dir, clean, backend=backend)
    assert [g["probabilities"] for g in got] == [w["probabilities"] for w in want]
    assert [g["text"] for g in got] == raw  # the answer names the text as it was given


def test_predict_scores_the_column_the_run_trained_on(tmp_path, tiny_bert):
    frame = make_sentiment_frame(120)
    data = pd.DataFrame({"id": range(120), "comment": ["see above"] * 120,
                         "review": frame["text"], "sentiment": frame["label"]})
    data.to_csv(tmp_path / "data.csv", index=False)
    run = sentitune.train(tiny_config(tiny_bert, tmp_path / "data.csv", epochs=1.0),
                          tmp_path / "run", progress=False).run_dir
    assert Run.open(run).facts["data_notes"]["text_column"] == "review"
    found = sentitune.score_file(run, tmp_path / "data.csv", tmp_path / "out.jsonl",
                                 progress=False)
    assert found.text_column == "review" and found.texts == 120
    rows = pd.read_json(tmp_path / "out.jsonl", lines=True)
    assert list(rows["text"]) == list(frame["text"])
    assert list(rows["id"]) == list(range(120)) and set(rows["comment"]) == {"see above"}
    dropped = sentitune.score_file(run, tmp_path / "data.csv", tmp_path / "bare.csv",
                                   keep_columns=False, progress=False)
    assert "id" not in pd.read_csv(dropped.output).columns


def test_each_method_gets_its_own_learning_rate():
    assert resolved(make_config(method="full")).training.learning_rate == 5e-5
    assert resolved(make_config(method="lora")).training.learning_rate == 2e-3
    assert resolved(make_config(method="lora", learning_rate=1e-4)).training.learning_rate \
        == 1e-4
    assert make_config().training.metric == "f1_macro"


def test_a_run_that_learned_nothing_says_so(tmp_path, tiny_bert, sentiment_csv):
    # In Python, settings are named as Python spells them, not as CLI flags.
    with pytest.warns(UserWarning, match=r"has not learned at learning rate 1e-09 with "
                                         r"method='full': try another learning_rate,"):
        result = sentitune.train(tiny_config(tiny_bert, sentiment_csv, epochs=1.0,
                                             learning_rate=1e-9), tmp_path / "run",
                                 progress=False)
    assert result.metrics["selection_metric"] == "f1_macro"


def test_multilabel_cardinality_gap_is_warned_about():
    from sentitune.config import TrainingConfig
    from sentitune.training import _warn_if_not_learned

    settings = TrainingConfig(learning_rate=1e-3)
    # 4 rows, a in 3 and b in 2: answering every label scores F1 0.857 and 0.667.
    learned = {"f1_macro": 0.9, "n": 4, "per_class": {"a": {"support": 3}, "b": {"support": 2}}}
    with pytest.warns(UserWarning, match="17.90 labels on average against 1.18"):
        _warn_if_not_learned(learned | {"label_cardinality_true": 1.18,
                                        "label_cardinality_pred": 17.9},
                             "multilabel", ["a", "b"], settings)
    with warnings.catch_warnings():  # a gap within the factor: silence
        warnings.simplefilter("error")
        _warn_if_not_learned(learned | {"label_cardinality_true": 1.18,
                                        "label_cardinality_pred": 1.4},
                             "multilabel", ["a", "b"], settings)


def test_a_multilabel_run_that_learned_nothing_says_so():
    """Issue 27: every probability about 0.52, macro-F1 0.023, and no word of it."""
    from sentitune.config import TrainingConfig
    from sentitune.training import _warn_if_not_learned

    support = {"n": 4, "per_class": {"a": {"support": 3}, "b": {"support": 2}}}
    with pytest.warns(UserWarning, match=r"at chance: validation macro-F1 0.023 vs 0.762 for "
                                         r"answering every label; it has not learned"):
        _warn_if_not_learned(support | {"f1_macro": 0.023, "label_cardinality_true": 1.25,
                                        "label_cardinality_pred": 1.5}, "multilabel",
                             ["a", "b"], TrainingConfig(learning_rate=1e-3))
