"""Behavioural tests for binary sentiment models, in the style of CheckList.

Ribeiro et al. 2020, "Beyond Accuracy: Behavioral Testing of NLP Models with CheckList".
Accuracy on a held-out set says little about *how* a model decides; these small generated
test sets ask specific questions:

- MFT (minimum functionality): does a simple sentence get the expected label?
- INV (invariance): does the prediction stay put under a change that should not matter
  (a typo, a URL, a city, an identity term)?
- DIR (directional): does p(positive) move the right way ("not" should lower it)?

The cases come from `sentitune.evaluation.suite` (our own templates and word lists, 100+
cases per test, grouped by CheckList capability); the same cases on every run. "Negation
of a negative" cannot demand a positive label (a negated complaint is often lukewarm, "not
bad"), so, as in the CheckList paper for binary models, a p(positive) above 1/3 counts as
neutral and passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sentitune.errors import SentituneError
from sentitune.evaluation.suite import generate_suite

POSITIVE_NAMES = {"positive", "pos", "1", "label_1", "true", "yes", "good"}
NEGATIVE_NAMES = {"negative", "neg", "0", "label_0", "false", "no", "bad"}
# Below 1/3 a binary model is taken to say "negative"; 1/3..2/3 counts as neutral.
NEUTRAL_LOW = 1 / 3

PredictProba = Callable[[list[str]], np.ndarray]


def positive_index(label_names: Sequence[str]) -> int:
    """The index of the positive label of a binary label set, found by name."""
    names = [str(name).strip().lower() for name in label_names]
    if len(names) == 2:
        for pos, neg in ((0, 1), (1, 0)):
            if names[pos] in POSITIVE_NAMES and names[neg] in NEGATIVE_NAMES:
                return pos
    raise SentituneError(
        f"behavioural tests need two labels named like negative/positive, got "
        f"{list(label_names)}; rename the labels or skip the behavioural tests"
    )


def _predict(predict_proba: PredictProba, texts: list[str], pos: int) -> np.ndarray:
    """p(positive) for each text, checking the model's output shape."""
    probs = np.asarray(predict_proba(texts), dtype=float)
    if probs.shape != (len(texts), 2):
        raise SentituneError(
            f"predict_proba returned shape {probs.shape} for {len(texts)} texts; "
            "it must return (n, 2) class probabilities"
        )
    return probs[:, pos]


def _passes(case: dict, test: dict, p: float, p_variant: float | None) -> bool:
    """Whether one case behaves as its test expects."""
    kind = test["kind"]
    if kind == "DIR":
        if test["direction"] == "up":
            return p_variant > p - test["tolerance"]
        return p_variant < p + test["tolerance"] if test["tolerance"] else p_variant < p
    if kind == "INV":
        return (p >= 0.5) == (p_variant >= 0.5)
    expect = case["expect"]
    if expect == "not_negative":
        return p > NEUTRAL_LOW
    return (p >= 0.5) == (expect == "positive")


def run_behavioral_tests(
    predict_proba: PredictProba, label_names: Sequence[str], max_examples: int = 5
) -> dict:
    """Run the bundled behavioural suite against a binary sentiment model.

    `predict_proba` maps a list of texts to an (n, 2) probability array ordered like
    `label_names`. Returns per-test failure counts and rates with up to `max_examples`
    failing cases each, and the failure rate pooled over all cases.
    """
    pos = positive_index(label_names)
    neg = 1 - pos

    def name(p: float) -> str:
        return label_names[pos] if p >= 0.5 else label_names[neg]

    results = []
    for test in generate_suite():
        kind, cases = test["kind"], test["cases"]
        variants = [c["variant"] for c in cases if "variant" in c]
        scores = _predict(predict_proba, [c["text"] for c in cases] + variants, pos)
        p_texts, p_variants = scores[: len(cases)], scores[len(cases) :]

        failures = []
        for i, case in enumerate(cases):
            p = float(p_texts[i])
            p_variant = float(p_variants[i]) if variants else None
            if _passes(case, test, p, p_variant):
                continue
            example = {"text": case["text"], "predicted": name(p), "p_positive": p}
            if kind == "MFT":
                example["expected"] = case["expect"]
            else:
                example.update(
                    variant=case["variant"],
                    variant_predicted=name(p_variant),
                    variant_p_positive=p_variant,
                )
            failures.append(example)

        results.append(
            {
                "name": test["name"],
                "kind": kind,
                "capability": test["capability"],
                "description": test["description"],
                "n": len(cases),
                "failures": len(failures),
                "failure_rate": len(failures) / len(cases),
                "examples": failures[:max_examples],
            }
            # How far p(positive) moves between text and variant, flips or not (a model
            # can treat two identity terms differently without crossing 0.5).
            | ({"mean_abs_change": float(np.abs(p_variants - p_texts).mean())}
               if variants else {})
        )
    total = sum(r["n"] for r in results)
    capabilities: dict[str, list[dict]] = {}
    for r in results:
        capabilities.setdefault(r["capability"], []).append(r)
    return {
        "tests": results,
        "capabilities": {name: sum(r["failures"] for r in tests) / sum(r["n"] for r in tests)
                         for name, tests in capabilities.items()},
        "overall_failure_rate": sum(r["failures"] for r in results) / total,
    }
