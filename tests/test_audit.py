"""`sentitune audit`: out-of-fold probabilities, cleanlab's label issues, duplicates, fixes."""

import json
import random

import pandas as pd
import pytest

from sentitune.auditing import audit
from sentitune.config import DataConfig
from sentitune.dataset.splits import load_encoded
from tests.conftest import assert_one_line_error, make_sentiment_frame, run_cli

FLIPPED = list(range(0, 200, 20))  # 10 of 200 rows


@pytest.fixture(scope="module")
def noisy_csv(tmp_path_factory):
    frame = make_sentiment_frame(200, seed=3)
    frame["clean"] = frame["label"]
    swap = {"positive": "negative", "negative": "positive"}
    frame.loc[FLIPPED, "label"] = frame.loc[FLIPPED, "label"].map(swap)
    path = tmp_path_factory.mktemp("audit") / "noisy.csv"
    frame.drop(columns="clean").to_csv(path, index=False)
    return path, frame


@pytest.fixture(scope="module")
def binary_audit(noisy_csv, tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit-out") / "binary"
    return audit(output=out, progress=False, dataset=str(noisy_csv[0]), model=str(tiny_bert),
                 fix="relabel", max_length=32)


def test_flipped_labels_rank_first(binary_audit, noisy_csv):
    flagged = [issue["row"] for issue in binary_audit.issues]
    found = set(flagged) & set(FLIPPED)
    assert len(found) >= 8, flagged  # recall
    assert len(found) / len(flagged) >= 0.6, flagged  # precision
    assert set(flagged[:5]) <= set(FLIPPED)  # the most certain issues are real ones
    frame = noisy_csv[1]
    for issue in binary_audit.issues:
        assert issue["text"] == frame["text"][issue["row"]]
        assert issue["given_label"] == frame["label"][issue["row"]]
        assert issue["suggested_label"] != issue["given_label"]
        assert 0.5 <= issue["confidence"] <= 1
    assert binary_audit.probabilities.shape == (200, 2)


def test_audit_files(binary_audit, noisy_csv):
    out = binary_audit.output
    lines = (out / "label_issues.jsonl").read_text().splitlines()
    assert [json.loads(line)["row"] for line in lines] == [i["row"] for i in binary_audit.issues]
    assert set(json.loads(lines[0])) == {"row", "text", "given_label", "suggested_label",
                                         "confidence", "label_quality"}
    html = (out / "summary.html").read_text()
    assert "Suspected label issues" in html and binary_audit.issues[0]["text"] in html
    assert "Suspected label issues" in (out / "summary.md").read_text()
    report = json.loads((out / "audit.json").read_text())
    assert report["counts"]["label_issues"] == len(binary_audit.issues)
    assert report["counts"]["rows"] == 200


def test_relabelled_file_trains_on_the_suggestions(binary_audit, noisy_csv):
    cleaned = binary_audit.files["cleaned"]
    encoded, names, task, _ = load_encoded(DataConfig(dataset=str(cleaned)))
    assert task == "binary" and len(encoded["train"]) == 200
    frame = noisy_csv[1]
    fixed = pd.read_csv(cleaned)
    for issue in binary_audit.issues:
        assert fixed["label"][issue["row"]] == issue["suggested_label"]
        if issue["row"] in FLIPPED:
            assert fixed["label"][issue["row"]] == frame["clean"][issue["row"]]


def test_conflicting_duplicates(tmp_path, tiny_bert):
    rows = make_sentiment_frame(60, seed=5)
    rows.loc[len(rows)] = ["What a great film", "positive"]
    rows.loc[len(rows)] = ["what a great film!", "negative"]
    rows.loc[len(rows)] = ["what a GREAT film", "positive"]
    data = tmp_path / "dupes.csv"
    rows.to_csv(data, index=False)
    result = audit(output=tmp_path / "out", progress=False, dataset=str(data),
                   model=str(tiny_bert), max_length=32, folds=3, fix="drop")
    exact = [d for d in result.duplicates if d["kind"] == "exact"]
    assert any(set(d["rows"]) == {60, 61, 62} for d in exact), exact
    assert all(len(set(map(str, d["labels"]))) > 1 for d in result.duplicates)
    near = [d for d in result.duplicates if d["kind"] == "near"]
    assert all(d["similarity"] >= 0.95 for d in near)
    dropped = pd.read_csv(result.files["cleaned"])
    assert len(dropped) == len(rows) - len(result.issues)


def _multiclass_frame(n: int) -> pd.DataFrame:
    rng = random.Random(1)
    words = {"positive": ["great", "lovely", "superb"], "negative": ["awful", "dull", "bad"],
             "neutral": ["average", "ordinary", "standard"]}
    rows = []
    for i in range(n):
        label = list(words)[i % 3]
        rows.append((f"the film was {rng.choice(words[label])} and {rng.choice(words[label])}",
                     label))
    return pd.DataFrame(rows, columns=["text", "label"])


def test_multiclass(tmp_path, tiny_bert):
    frame = _multiclass_frame(150)
    frame.loc[[0, 30, 60], "label"] = ["neutral", "positive", "negative"]
    data = tmp_path / "three.csv"
    frame.to_csv(data, index=False)
    result = audit(output=tmp_path / "out", progress=False, dataset=str(data),
                   model=str(tiny_bert), max_length=32)
    assert result.report["task"] == "multiclass"
    assert result.probabilities.shape == (150, 3)
    assert all(i["suggested_label"] in {"positive", "negative", "neutral"} for i in result.issues)


def test_multilabel_uses_cleanlabs_multilabel_api(tmp_path, tiny_bert):
    rng = random.Random(2)
    aspects = {"plot": ["story", "twists"], "acting": ["cast", "performances"],
               "music": ["score", "songs"]}
    rows = []
    for i in range(120):
        chosen = sorted(rng.sample(list(aspects), 1 + i % 2))
        words = " and ".join(rng.choice(aspects[a]) for a in chosen)
        rows.append((f"i liked the {words}", "|".join(chosen)))
    frame = pd.DataFrame(rows, columns=["text", "label"])
    frame.loc[[3, 50], "label"] = ["music", "plot|acting|music"]
    data = tmp_path / "aspects.csv"
    frame.to_csv(data, index=False)
    result = audit(output=tmp_path / "out", progress=False, dataset=str(data),
                   model=str(tiny_bert), max_length=32, fix="relabel")
    assert result.report["task"] == "multilabel"
    assert result.probabilities.shape == (120, 3)
    for issue in result.issues:
        assert isinstance(issue["given_label"], list)
        assert isinstance(issue["suggested_label"], list)
    encoded, names, task, _ = load_encoded(DataConfig(dataset=str(result.files["cleaned"])))
    assert task == "multilabel" and names == ["acting", "music", "plot"]


def test_finetuned_folds(tmp_path, tiny_bert, noisy_csv):
    frame = pd.read_csv(noisy_csv[0]).head(48)
    data = tmp_path / "small.csv"
    frame.to_csv(data, index=False)
    result = audit(output=tmp_path / "out", progress=False, dataset=str(data),
                   model=str(tiny_bert), finetune=True, folds=2, epochs=1.0, max_length=32)
    assert result.report["mode"] == "finetune"
    assert result.probabilities.shape == (48, 2)
    assert result.probabilities.sum(axis=1) == pytest.approx(1.0, abs=1e-5)


def test_cli_audits_a_runs_training_rows(tiny_run_dir, tmp_path, capsys):
    code, out, err = run_cli(capsys, "audit", "--run", str(tiny_run_dir), "--output",
                             str(tmp_path / "a"), "--max-length", "32", "--folds", "3",
                             "--quiet")
    assert code == 0, err
    assert "rows audited" in out and (tmp_path / "a" / "label_issues.jsonl").is_file()


@pytest.mark.parametrize(("frame", "flags", "message"), [
    (pd.DataFrame({"text": ["good", "great", "fine"], "label": ["pos", "pos", "pos"]}), [],
     "only one class"),
    (pd.DataFrame({"text": ["good", "bad", "fine"], "label": ["pos", "neg", "pos"]}), [],
     "cannot fill 5 folds"),
    (pd.DataFrame({"text": ["good", "bad"] * 5, "label": ["pos", "neg"] * 5}),
     ["--text-column", "review"], "no text column 'review'"),
])
def test_bad_input_is_one_error_line_and_no_files(tmp_path, capsys, frame, flags, message):
    data = tmp_path / "bad.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "audit", "--data", str(data), "--output", str(out), *flags)
    assert_one_line_error(code, err, message)
    assert not out.exists()


def test_nothing_to_audit(capsys):
    code, _, err = run_cli(capsys, "audit")
    assert_one_line_error(code, err, "--data")
