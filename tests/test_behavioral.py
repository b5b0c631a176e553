"""The behavioural suite, run against tiny plain-Python "models" with known flaws."""

import re

import numpy as np
import pytest

from sentitune.errors import SentituneError
from sentitune.evaluation.behavioral import positive_index, run_behavioral_tests

POSITIVE_WORDS = {"good", "great", "excellent", "wonderful", "amazing", "fantastic", "brilliant",
                  "delightful", "enjoyable", "superb", "lovely", "impressive", "outstanding",
                  "perfect", "fun", "beautiful", "love", "like", "enjoy", "adore", "recommend",
                  "appreciate"}
NEGATIVE_WORDS = {"bad", "terrible", "awful", "horrible", "boring", "disappointing", "dreadful",
                  "poor", "mediocre", "annoying", "frustrating", "useless", "unpleasant", "lousy",
                  "painful", "dull", "hate", "dislike", "despise", "regret", "loathe", "detest"}


def always_positive(texts):
    """Broken model: p(positive) = 0.99 whatever the text. Labels: [negative, positive]."""
    return np.tile([0.01, 0.99], (len(texts), 1))


def lexicon_model(texts):
    """Counts sentiment words and ignores negation. Labels: [positive, negative]."""
    rows = []
    for text in texts:
        words = re.findall(r"[a-z]+", text.lower())
        score = sum(w in POSITIVE_WORDS for w in words) - sum(w in NEGATIVE_WORDS for w in words)
        p_pos = 1 / (1 + np.exp(-2 * score))
        rows.append([p_pos, 1 - p_pos])
    return np.array(rows)


def rates(result):
    return {t["name"]: t["failure_rate"] for t in result["tests"]}


@pytest.fixture(scope="module")
def broken_result():
    return run_behavioral_tests(always_positive, ["negative", "positive"])


@pytest.fixture(scope="module")
def lexicon_result():
    return run_behavioral_tests(lexicon_model, ["POSITIVE", "NEGATIVE"])


def test_report_shape(broken_result):
    assert len(broken_result["tests"]) >= 8
    kinds = {t["kind"] for t in broken_result["tests"]}
    assert kinds == {"MFT", "INV", "DIR"}
    for test in broken_result["tests"]:
        assert set(test) == {"name", "kind", "description", "n", "failures", "failure_rate",
                             "examples"}
        assert 20 <= test["n"] <= 60
        assert len(test["examples"]) == min(5, test["failures"])
        assert test["failure_rate"] == test["failures"] / test["n"]


def test_broken_model_fails_loudly(broken_result):
    r = rates(broken_result)
    assert r["negative sentences"] == 1.0
    assert r["negated positive"] == 1.0
    assert r["adding 'not' lowers positive"] == 1.0  # p never moves
    assert r["positive sentences"] == 0.0
    assert broken_result["overall_failure_rate"] > 0.3
    negative = next(t for t in broken_result["tests"] if t["name"] == "negative sentences")
    first = negative["examples"][0]
    assert (first["predicted"], first["expected"], first["p_positive"]) == (
        "positive", "negative", 0.99
    )


def test_lexicon_model_passes_basics_but_fails_negation(lexicon_result):
    r = rates(lexicon_result)
    assert r["positive sentences"] == r["negative sentences"] == 0.0
    assert r["negated positive"] == 1.0
    assert r["negated negative"] == 1.0
    assert r["adding 'not' lowers positive"] == 1.0
    assert r["person names"] == r["punctuation"] == 0.0
    # A swapped letter can break the one sentiment word a lexicon relies on.
    assert r["typos"] > 0.0
    inv = next(t for t in lexicon_result["tests"] if t["name"] == "typos")
    assert {"text", "variant", "predicted", "variant_predicted"} <= set(inv["examples"][0])


def test_deterministic():
    first = run_behavioral_tests(lexicon_model, ["positive", "negative"], max_examples=50)
    second = run_behavioral_tests(lexicon_model, ["positive", "negative"], max_examples=50)
    assert first == second


@pytest.mark.parametrize(
    ("names", "index"),
    [
        (["negative", "positive"], 1),
        (["POS", "NEG"], 0),
        (["0", "1"], 1),
        (["LABEL_0", "LABEL_1"], 1),
    ],
)
def test_positive_index(names, index):
    assert positive_index(names) == index


@pytest.mark.parametrize("names", [["negative", "neutral", "positive"], ["spam", "ham"], ["pos"]])
def test_non_binary_labels_rejected(names):
    with pytest.raises(SentituneError, match="two labels named like negative/positive"):
        run_behavioral_tests(always_positive, names)


def test_wrong_output_shape_rejected():
    with pytest.raises(SentituneError, match=r"\(n, 2\)"):
        run_behavioral_tests(lambda texts: np.ones(len(texts)), ["negative", "positive"])
