"""The behavioural suite, run against tiny plain-Python "models" with known flaws."""

import re

import numpy as np
import pytest

from sentitune.errors import SentituneError
from sentitune.evaluation.behavioral import positive_index, run_behavioral_tests
from sentitune.evaluation.suite import (
    IDENTITY_GROUPS,
    PERTURBATIONS,
    generate_suite,
    identity_terms,
    lexicon,
    negation_cues,
)

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
        assert set(test) - {"mean_abs_change"} == {"name", "kind", "capability",
                                                   "description", "n", "failures",
                                                   "failure_rate", "examples"}
        assert ("mean_abs_change" in test) == (test["kind"] != "MFT")
        assert test["n"] >= 100
        assert len(test["examples"]) == min(5, test["failures"])
        assert test["failure_rate"] == test["failures"] / test["n"]


def test_broken_model_fails_loudly(broken_result):
    r = rates(broken_result)
    assert r["negative sentences"] == 1.0
    assert r["negated positive"] == 1.0
    assert r["adding 'not' lowers positive"] == 1.0  # p never moves
    assert r["positive sentences"] == 0.0
    # INV tests cannot catch a constant answer; every test expecting "negative" does.
    assert broken_result["overall_failure_rate"] > 0.2
    assert broken_result["capabilities"]["negation"] > 0.4
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


CHECKLIST_CAPABILITIES = {"vocabulary", "robustness", "named entities", "temporal",
                          "negation", "semantic roles", "questions", "fairness"}


def test_suite_covers_every_capability_with_100_distinct_cases():
    suite = generate_suite()
    assert {t["capability"] for t in suite} == CHECKLIST_CAPABILITIES
    fairness = {t["name"] for t in suite if t["capability"] == "fairness"}
    assert fairness == {f"fairness: {g.replace('_', ' ')}" for g in IDENTITY_GROUPS}
    for test in suite:
        texts = [c["text"] for c in test["cases"]]
        assert len({(c["text"], c.get("variant")) for c in test["cases"]}) >= 100, test["name"]
        assert all(t[0].isupper() or not t[0].isalpha() for t in texts)
        for case in test["cases"]:
            if test["kind"] != "MFT":
                assert case["variant"] != case["text"], (test["name"], case)


def test_fairness_cases_change_only_the_identity_term():
    terms = identity_terms()
    for test in generate_suite():
        if test["capability"] != "fairness":
            continue
        group = terms[test["name"].split(": ")[1].replace(" ", "_")]
        for case in test["cases"]:
            before = [w for w in group if f" {w} " in f" {case['text']} "]
            after = [w for w in group if f" {w} " in f" {case['variant']} "]
            assert before and after and before != after
            assert case["text"].replace(before[0], after[0], 1) == case["variant"]


def test_word_lists_are_exposed_for_reuse():
    terms = identity_terms()
    assert set(terms) == set(IDENTITY_GROUPS) and all(len(v) >= 6 for v in terms.values())
    assert "Muslim" in terms["religion"] and "gay" in terms["sexual_orientation"]
    assert {"not", "never"} <= set(negation_cues())
    terms["religion"].clear()  # callers get copies
    assert identity_terms()["religion"]
    assert {"pos_adj", "neg_adj", "city", "number"} <= set(lexicon())


def test_perturbations():
    words = lexicon()
    assert PERTURBATIONS["contraction"]("It is good and I am glad.", words) == \
        "It's good and I'm glad."
    assert PERTURBATIONS["contraction"]("I don't like it.", words) == "I do not like it."
    noisy = PERTURBATIONS["url_and_handle"]("Nice film.", words)
    assert noisy.startswith("@") and " Nice film. " in noisy and noisy.split()[-1] in words["url"]


def _biased(word: str):
    """The lexicon model, plus one identity term it treats as a strong negative word."""
    def model(texts):
        probs = lexicon_model(texts)
        hit = np.array([word in t.split() for t in texts])
        probs[hit] = [0.02, 0.98]  # [positive, negative]
        return probs

    return model


def test_fairness_tests_catch_a_biased_model_and_only_its_group():
    fair = rates(run_behavioral_tests(lexicon_model, ["positive", "negative"]))
    biased = rates(run_behavioral_tests(_biased("Muslim"), ["positive", "negative"]))
    assert all(fair[f"fairness: {g.replace('_', ' ')}"] == 0.0 for g in IDENTITY_GROUPS)
    assert biased["fairness: religion"] > 0.1
    shifts = {t["name"]: t["mean_abs_change"] for t in run_behavioral_tests(
        _biased("Muslim"), ["positive", "negative"])["tests"] if t["kind"] != "MFT"}
    assert shifts["fairness: religion"] > 0.05 and shifts["fairness: gender"] == 0.0
    for group in ("nationality", "race", "sexual orientation", "gender"):
        assert biased[f"fairness: {group}"] == 0.0


def test_order_blind_lexicon_fails_temporal_roles_and_questions(lexicon_result):
    r = rates(lexicon_result)
    # Equal counts of positive and negative words: a coin at 0.5, so half of each test at least.
    assert r["whose opinion counts"] >= 0.5
    assert r["temporal: the present decides"] >= 0.5
    # "Did I think it was great? No." holds only a positive word.
    assert r["questions answered yes or no"] >= 0.25
    assert r["negated expectation"] >= 0.5
    assert r["negation with neutral content in between"] >= 0.5
    assert r["locations"] == r["numbers"] == r["URLs and handles"] == 0.0
    assert set(lexicon_result["capabilities"]) == CHECKLIST_CAPABILITIES


def _phrase_model(sign: int):
    """The lexicon model that also reads the suite's added phrases: sign 1 rightly, -1 the
    wrong way round."""
    words = lexicon()

    def model(texts):
        probs = lexicon_model(texts)
        for i, text in enumerate(texts):
            for phrases, p_pos in ((words["pos_phrase"], 0.99), (words["neg_phrase"], 0.01)):
                if any(phrase in text for phrase in phrases):
                    p = p_pos if sign > 0 else 1 - p_pos
                    probs[i] = [p, 1 - p]
        return probs

    return model


def test_directional_phrase_tests_catch_a_model_reading_phrases_backwards():
    backwards = rates(run_behavioral_tests(_phrase_model(-1), ["positive", "negative"]))
    assert backwards["adding a positive phrase"] > 0.5
    assert backwards["adding a negative phrase"] > 0.5
    right = rates(run_behavioral_tests(_phrase_model(1), ["positive", "negative"]))
    assert right["adding a positive phrase"] == right["adding a negative phrase"] == 0.0
