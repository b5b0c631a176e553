"""Slice rules on hand-written sentences, and per-slice metrics that add up."""

import re

import pytest

from sentitune.errors import SentituneError
from sentitune.evaluation import slices
from sentitune.evaluation.slices import Slice, assign_slices, register_slice, slice_metrics


def text_slices_of(text: str) -> set[str]:
    return set(assign_slices([text])[0])


@pytest.mark.parametrize(
    "text",
    [
        "This is not good.",
        "I didn't like it at all",
        "It isn’t worth the money",  # curly apostrophe
        "It does n't work",  # tokenised as in SST
        "I dont recommend it",
        "Never again.",
        "Nothing works and nobody cares",
        "Without a doubt the worst",
        "It was anything but good",
        "Not bad at all",  # negation of a negative: exactly the hard case, stays in
        "I couldn't be happier",
        "Not only the plot, it is not good either",  # a real "not" besides "not only"
    ],
)
def test_negation_found(text):
    assert "negation" in text_slices_of(text)


@pytest.mark.parametrize(
    "text",
    [
        "Not only good but great.",
        "Nothing but praise for the cast",
        "No doubt the best film this year",
        "No wonder it won every award",
        "I can't help but smile",
        "A notable, nonstop, knotty thriller",  # substrings are not words
        "Another annotation",
    ],
)
def test_negation_exceptions_and_substrings(text):
    assert "negation" not in text_slices_of(text)


@pytest.mark.parametrize(
    "text",
    [
        "Great cast, but the plot is thin",
        "Although it starts slowly, it is brilliant",
        "Cheap, yet it feels solid",
        "However, the ending disappoints",
        "Tiny, whereas the old one was huge",
        "Loud though lovely",
        "Cheap, but also fragile",
    ],
)
def test_contrast_found(text):
    assert "contrast" in text_slices_of(text)


@pytest.mark.parametrize(
    "text",
    [
        "Nothing but praise for the cast",
        "Not only good but great.",
        "Not just cheap, but also well made",
        "The hero all but vanishes",
        "I can't help but smile",
        "It has not arrived yet.",
        "Yet another sequel",
    ],
)
def test_contrast_exceptions(text):
    assert "contrast" not in text_slices_of(text)


def test_contrast_still_found_beside_an_exception():
    assert "contrast" in text_slices_of("Nothing but praise, but the seats were bad")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Very good", True),
        ("It is SO good", True),
        ("Absolutely loved it", True),
        ("such a mess", True),
        ("So I left early.", False),
        ("I think so.", False),
        ("Films such as this one", False),
        ("So far, fine", False),
    ],
)
def test_intensifier(text, expected):
    assert ("intensifier" in text_slices_of(text)) is expected


def test_punctuation_slices():
    assert {"question", "exclamation"} <= text_slices_of("Really? Wow!")
    assert not {"question", "exclamation"} & text_slices_of("Fine.")


def test_length_quartiles_and_truncation_add_up():
    lengths = [3, 5, 8, 10, 12, 20, 40, 700]
    result = assign_slices(["x"] * 8, token_lengths=lengths, max_length=512)
    buckets = [next(s for s in names if s.startswith("length:")) for names in result]
    assert buckets == ["length:q1"] * 2 + ["length:q2"] * 2 + ["length:q3"] * 2 + ["length:q4"] * 2
    assert [("truncated" in names) for names in result] == [False] * 7 + [True]


def test_class_slices_from_indices_or_names():
    by_index = assign_slices(["a", "b"], true_labels=[1, 0], label_names=["neg", "pos"])
    by_name = assign_slices(["a", "b"], true_labels=["pos", "neg"])
    assert by_index == by_name == [["class:pos"], ["class:neg"]]


def test_user_slices_regex_and_callable():
    extra = [
        Slice("price", "mentions money", r"\b(?:price|cost|\$\d+)"),
        Slice("shouting", "all caps", lambda t: t.isupper()),
    ]
    result = assign_slices(["The PRICE is fine", "AWFUL"], extra_slices=extra)
    assert result == [["price"], ["shouting"]]


def test_register_slice(monkeypatch):
    monkeypatch.setattr(slices, "_registered", {})
    register_slice(Slice("refund", "asks for a refund", "refund"))
    assert "refund" in text_slices_of("I want a REFUND")
    with pytest.raises(SentituneError, match="already used"):
        register_slice(Slice("refund", "again", "x"))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (Slice("negation", "clash", "x"), "already used"),
        (Slice("class:foo", "reserved", "x"), "reserved"),
        (Slice("bad", "broken regex", "(unclosed"), "invalid regex"),
    ],
)
def test_bad_user_slices(item, message):
    with pytest.raises(SentituneError, match=re.escape(message)):
        assign_slices(["x"], extra_slices=[item])


def test_slice_metrics_consistent_counts():
    texts = ["not good", "great", "not bad but fine", "awful!", "ok?", "very nice", "meh", "bad"]
    y_true = [0, 1, 1, 0, 1, 1, 0, 0]
    y_pred = [0, 1, 0, 0, 1, 1, 1, 0]
    lists = assign_slices(
        texts,
        token_lengths=[2, 1, 4, 2, 2, 2, 1, 1],
        true_labels=y_true,
        label_names=["neg", "pos"],
    )
    metrics = slice_metrics(lists, y_true, y_pred, ["neg", "pos"])

    assert metrics["all"] == {"count": 8, "accuracy": 0.75, "f1_macro": 0.75, "errors": 2,
                              "share": 1.0}
    assert metrics["class:neg"]["count"] + metrics["class:pos"]["count"] == 8
    assert sum(m["count"] for k, m in metrics.items() if k.startswith("length:")) == 8
    assert sum(m["errors"] for k, m in metrics.items() if k.startswith("class:")) == 2
    assert metrics["negation"] == {"count": 2, "accuracy": 0.5, "f1_macro": pytest.approx(1 / 3),
                                   "errors": 1, "share": 0.25}
    assert metrics["class:pos"]["accuracy"] == 0.75  # = recall of the positive class
    assert "question" in metrics and "truncated" not in metrics  # empty slices left out


def test_slice_metrics_rejects_mismatched_input():
    with pytest.raises(SentituneError, match="differ in length"):
        slice_metrics([[]], [0, 1], [0, 1], ["a", "b"])
    with pytest.raises(SentituneError, match="indices"):
        slice_metrics([[], []], [0, 2], [0, 1], ["a", "b"])
