"""Data loading, cleaning, label mapping and splitting on small files written here."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import make_sentiment_frame

from sentitune.config import DataConfig
from sentitune.dataset import clean_text, label_names_for, load_eval_split, load_splits
from sentitune.errors import SentituneError


def splits_of(path, **kwargs):
    return load_splits(DataConfig(dataset=str(path), **kwargs), seed=1)


def test_clean_text_strips_imdb_markup_and_whitespace():
    raw = "Great film.<br /><br />Loved it &amp; the cast.\u00a0\n  Really."
    assert clean_text(raw) == "Great film. Loved it & the cast. Really."
    assert clean_text("<b>x</b>", strip_html=False) == "<b>x</b>"


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet", ".csv.gz"])
def test_every_file_format_reads_to_the_same_rows(tmp_path, suffix):
    frame = make_sentiment_frame(40)
    path = tmp_path / f"data{suffix}"
    if suffix.startswith(".csv"):
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".json":
        frame.to_json(path, orient="records")
    else:
        frame.to_parquet(path)
    splits = splits_of(path)
    assert splits.labels == ["negative", "positive"]
    assert splits.task == "binary"
    assert len(splits.train) + len(splits.validation) == 40
    assert set(splits.train["label"]) == {0, 1}


def test_columns_are_guessed_or_named(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"review": ["good", "bad"] * 10, "sentiment": ["pos", "neg"] * 10}).to_csv(
        path, index=False)
    assert splits_of(path).labels == ["negative", "positive"]
    other = tmp_path / "e.csv"
    pd.DataFrame({"body_text": ["good", "bad"] * 10, "y": [1, 0] * 10}).to_csv(other, index=False)
    with pytest.raises(SentituneError, match="columns found: body_text, y"):
        splits_of(other)
    named = splits_of(other, text_column="body_text", label_column="y")
    assert named.labels == ["negative", "positive"]


def test_missing_named_column_lists_columns(tmp_path):
    path = tmp_path / "d.csv"
    make_sentiment_frame(20).to_csv(path, index=False)
    with pytest.raises(SentituneError, match="no text column 'review'; columns found: text, label"):
        splits_of(path, text_column="review")


def test_empty_and_nan_rows_are_dropped_with_a_count(tmp_path):
    frame = make_sentiment_frame(40)
    frame.loc[0, "text"] = "   "
    frame.loc[1, "text"] = None
    frame.loc[2, "label"] = None
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    splits = splits_of(path)
    assert splits.notes["dropped_rows"]["train"] == 3
    assert len(splits.train) + len(splits.validation) == 37


def test_no_rows_left_is_an_error(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": [" ", ""], "label": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(SentituneError, match="no rows left"):
        splits_of(path)


def test_one_class_is_an_error(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": ["good", "fine"] * 5, "label": ["positive"] * 10}).to_csv(path,
                                                                                   index=False)
    with pytest.raises(SentituneError, match="only one class"):
        splits_of(path)


def test_unknown_label_strings_are_named(tmp_path):
    path = tmp_path / "d.csv"
    labels = ["pos", "neg"] * 10 + ["positve"]
    pd.DataFrame({"text": [f"t{i}" for i in range(21)], "label": labels}).to_csv(path,
                                                                                index=False)
    with pytest.raises(SentituneError, match="'positve'"):
        splits_of(path)


def test_label_names_from_many_spellings():
    assert label_names_for([0, 1, 1]) == ["negative", "positive"]
    assert label_names_for(["POS", "neg"]) == ["negative", "positive"]
    assert label_names_for(["negative", "neutral", "positive"]) == [
        "negative", "neutral", "positive"]
    assert label_names_for([3, 1, 2]) == ["1", "2", "3"]
    assert label_names_for(["joy", "anger", "fear"]) == ["anger", "fear", "joy"]


def test_train_samples_larger_than_data(tmp_path):
    path = tmp_path / "d.csv"
    make_sentiment_frame(40).to_csv(path, index=False)
    with pytest.raises(SentituneError, match="larger than the 36 rows"):
        splits_of(path, train_samples=100)


def test_subsets_are_seeded_and_stratified(tmp_path):
    path = tmp_path / "d.csv"
    make_sentiment_frame(400).to_csv(path, index=False)
    a = load_splits(DataConfig(dataset=str(path), train_samples=100, val_samples=20), seed=3)
    b = load_splits(DataConfig(dataset=str(path), train_samples=100, val_samples=20), seed=3)
    c = load_splits(DataConfig(dataset=str(path), train_samples=100, val_samples=20), seed=4)
    assert list(a.train["text"]) == list(b.train["text"])
    assert list(a.train["text"]) != list(c.train["text"])
    assert a.train["label"].value_counts().to_dict() == {0: 50, 1: 50}
    assert len(a.validation) == 20
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_missing_file_and_binary_file(tmp_path):
    with pytest.raises(SentituneError, match="file not found"):
        splits_of(tmp_path / "nope.csv")
    binary = tmp_path / "blob.csv"
    binary.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(SentituneError, match="binary or malformed"):
        splits_of(binary)


def test_unknown_builtin_name():
    with pytest.raises(SentituneError, match="unknown dataset 'imbd'"):
        load_splits(DataConfig(dataset="imbd"), seed=0)


def test_aclimdb_folder_layout(tmp_path):
    root = tmp_path / "aclImdb"
    for split in ("train", "test"):
        for sub, word in (("pos", "wonderful"), ("neg", "awful")):
            (root / split / sub).mkdir(parents=True)
            for i in range(6):
                (root / split / sub / f"{i}_7.txt").write_text(f"A {word} film.<br />Yes {i}.")
    (root / "train" / "unsup").mkdir()
    (root / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    splits = splits_of(root, val_fraction=0.25)
    assert len(splits.train) + len(splits.validation) == 12  # unsup dropped
    assert len(splits.test) == 12
    assert not any("<br" in t for t in splits.train["text"])
    positives = splits.train[splits.train["label"] == 1]["text"]
    assert all("wonderful" in t for t in positives)


def test_train_test_overlap_and_duplicates_are_counted(tmp_path):
    root = tmp_path / "aclImdb"
    for split in ("train", "test"):
        for sub in ("pos", "neg"):
            (root / split / sub).mkdir(parents=True)
            for i in range(5):
                (root / split / sub / f"{i}.txt").write_text(f"{sub} review {i % 4}")
    splits = splits_of(root, val_fraction=0.2)
    assert splits.notes["duplicates_in_train"] == 2
    assert splits.notes["train_test_overlap"] > 0


def test_multilabel_is_inferred_from_label_lists(tmp_path):
    path = tmp_path / "emo.csv"
    labels = ["joy", "anger|fear", "joy,surprise", "fear"] * 10
    pd.DataFrame({"text": [f"text {i}" for i in range(40)], "label": labels}).to_csv(
        path, index=False)
    splits = splits_of(path)
    assert splits.task == "multilabel"
    assert splits.labels == ["anger", "fear", "joy", "surprise"]
    assert all(isinstance(ids, list) for ids in splits.train["label"])


def test_task_binary_with_three_classes_is_an_error(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": ["a", "b", "c"] * 10}).to_csv(
        path, index=False)
    with pytest.raises(SentituneError, match="--task binary but .* has 3 classes"):
        splits_of(path, task="binary")


def test_builtin_sst2_from_data_dir(data_dir_env):
    splits = load_splits(DataConfig(dataset="sst2", train_samples=200), seed=0)
    assert len(splits.train) == 200
    assert len(splits.validation) == 872  # GLUE dev
    assert splits.labels == ["negative", "positive"]


def test_eval_split_maps_onto_run_labels(tmp_path):
    path = tmp_path / "eval.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["pos", "neg", "meh"]}).to_csv(path,
                                                                                  index=False)
    with pytest.raises(SentituneError, match="unknown label 'meh'; expected one of: negative"):
        load_eval_split(str(path), None, ["negative", "positive"], "binary")


def test_header_only_file_is_an_error(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\n")
    with pytest.raises(SentituneError, match="no rows left"):
        splits_of(path)


def test_every_unknown_label_is_named(tmp_path):
    path = tmp_path / "eval.csv"
    pd.DataFrame({"text": list("abcd"), "label": ["joy", "pos", "anger", "joy"]}).to_csv(
        path, index=False)
    with pytest.raises(SentituneError, match="unknown label 'joy', 'anger'; expected one of"):
        load_eval_split(str(path), None, ["negative", "positive"], "binary")


def test_mixed_type_sentiment_labels_are_one_binary_task(tmp_path):
    frame = make_sentiment_frame(40)
    polar = frame["label"] == "positive"
    # One writer stored ids, another names: 0, 1, "negative", "positive" in one column.
    frame["label"] = [(1 if p else 0) if (i // 2) % 2 else ("positive" if p else "negative")
                      for i, p in enumerate(polar)]
    path = tmp_path / "mixed.jsonl"
    frame.to_json(path, orient="records", lines=True)
    splits = splits_of(path)
    assert splits.task == "binary" and splits.labels == ["negative", "positive"]
    rows = pd.concat([splits.train, splits.validation])
    expected = dict(zip(frame["text"], polar.astype(int), strict=False))
    assert all(expected[text] == label for text, label in zip(rows["text"], rows["label"],
                                                              strict=True))


def test_minus_one_zero_one_stay_three_classes(tmp_path):
    frame = make_sentiment_frame(60)
    frame["label"] = [i % 3 - 1 for i in range(60)]
    path = tmp_path / "three.csv"
    frame.to_csv(path, index=False)
    splits = splits_of(path)
    assert splits.task == "multiclass" and splits.labels == ["-1", "0", "1"]


def test_clean_text_drops_invisible_characters_and_replaces_lone_surrogates():
    assert clean_text("a\u200bgood\ufeff film\u00ad") == "agood film"
    assert clean_text("\u200b \u2060") == ""
    # Bytes that were not UTF-8 (as Python keeps them from a command line) and a lone
    # surrogate become U+FFFD, as undecodable bytes in files do.
    assert clean_text(b"caf\xe9 \xff good".decode("utf-8", "surrogateescape")) == \
        "caf\ufffd \ufffd good"
    assert clean_text("\ud800 x") == "\ufffd x"


def test_a_cell_over_the_size_limit_is_refused_before_tokenizing(tmp_path):
    from sentitune.dataset.sources import MAX_CELL_CHARS, iter_table

    frame = make_sentiment_frame(40)
    frame.loc[25, "text"] = "word " * (MAX_CELL_CHARS // 5 + 1)
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(SentituneError, match=r"row 26, column 'text' holds 1,000,005 "
                                             r"characters, over the limit of 1,000,000"):
        splits_of(path)
    with pytest.raises(SentituneError, match="row 26"):
        list(iter_table(path, chunk_size=10))  # counted across chunks
    frame.loc[25, "text"] = "word " * (MAX_CELL_CHARS // 5)  # at the limit: read
    frame.to_csv(path, index=False)
    assert len(splits_of(path).train) + len(splits_of(path).validation) == 40
