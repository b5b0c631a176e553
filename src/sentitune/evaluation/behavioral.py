"""Behavioural tests for binary sentiment models, in the style of CheckList.

Ribeiro et al. 2020, "Beyond Accuracy: Behavioral Testing of NLP Models with CheckList".
Accuracy on a held-out set says little about *how* a model decides; these small generated
test sets ask specific questions:

- MFT (minimum functionality): does a simple sentence get the expected label?
- INV (invariance): does the prediction stay put under a change that should not matter
  (a typo, a person's name, a full stop)?
- DIR (directional): does p(positive) move the right way ("not" should lower it)?

The sentences come from templates and word lists we wrote, in the package data files
``checks/suite.json`` and ``checks/lexicon.json``; the same cases are generated on every
run (seeded by test name). "Negation of a negative" cannot demand a positive label (a
negated complaint is often lukewarm, "not bad"), so, as in the CheckList paper for binary
models, a p(positive) above 1/3 counts as neutral and passes.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import string
from collections.abc import Callable, Iterator, Sequence
from importlib import resources

import numpy as np

from sentitune.errors import SentituneError

POSITIVE_NAMES = {"positive", "pos", "1", "label_1", "true", "yes", "good"}
NEGATIVE_NAMES = {"negative", "neg", "0", "label_0", "false", "no", "bad"}
# Below 1/3 a binary model is taken to say "negative"; 1/3..2/3 counts as neutral.
NEUTRAL_LOW = 1 / 3

PredictProba = Callable[[list[str]], np.ndarray]


def _load(name: str) -> dict:
    """One JSON file from the package's ``checks/`` data directory."""
    checks = resources.files("sentitune.evaluation").joinpath("checks")
    return json.loads(checks.joinpath(name).read_text("utf-8"))


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


def _fill(
    templates: Sequence[str], lexicon: dict[str, list[str]], k: int, seed: str
) -> Iterator[list[str]]:
    """Up to `k` fillings of `templates` (filled alike), sampled without replacement."""
    fields = sorted(
        {f for t in templates for _, f, _, _ in string.Formatter().parse(t) if f}
    )
    unknown = [f for f in fields if f not in lexicon]
    if unknown:
        raise SentituneError(f"behavioural templates use unknown word lists {unknown}")
    combos = list(itertools.product(*(lexicon[f] for f in fields)))
    for combo in random.Random(seed).sample(combos, min(k, len(combos))):
        values = dict(zip(fields, combo, strict=True))
        yield [t.format(**values) for t in templates]


def _typo(text: str) -> str:
    """Swap two adjacent, different letters inside one word of 4+ letters."""
    rng = random.Random(f"typo:{text}")
    words = [m for m in re.finditer(r"[A-Za-z]{4,}", text) if len(set(m.group())) > 1]
    word = rng.choice(words)
    spots = [i for i in range(word.start(), word.end() - 1) if text[i] != text[i + 1]]
    i = rng.choice(spots)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def _toggle_full_stop(text: str) -> str:
    """Remove final punctuation when present, else add a full stop."""
    stripped = text.rstrip(".!?")
    return stripped if stripped != text else text + "."


PERTURBATIONS: dict[str, Callable[[str], str]] = {
    "typo": _typo,
    "punctuation": _toggle_full_stop,
}


def _build_cases(test: dict, lexicon: dict[str, list[str]], n: int) -> list[dict]:
    """Concrete cases of one test: MFT {text, expect}; INV/DIR {text, variant}."""
    groups = test.get("cases") or test["pairs"]
    per_group = -(-n // len(groups))  # ceiling: at least n in total
    cases = []
    for i, group in enumerate(groups):
        seed = f"{test['name']}:{i}"
        if test["kind"] == "MFT":
            for (text,) in _fill([group["template"]], lexicon, per_group, seed):
                cases.append({"text": text, "expect": group["expect"]})
        elif "variant" in group:
            for base, variant in _fill([group["base"], group["variant"]], lexicon, per_group, seed):
                cases.append({"text": base, "variant": variant})
        else:
            perturb = PERTURBATIONS[test["perturbation"]]
            for (base,) in _fill([group["base"]], lexicon, per_group, seed):
                cases.append({"text": base, "variant": perturb(base)})
    return cases[:n]


def _predict(predict_proba: PredictProba, texts: list[str], pos: int) -> np.ndarray:
    """p(positive) for each text, checking the model's output shape."""
    probs = np.asarray(predict_proba(texts), dtype=float)
    if probs.shape != (len(texts), 2):
        raise SentituneError(
            f"predict_proba returned shape {probs.shape} for {len(texts)} texts; "
            "it must return (n, 2) class probabilities"
        )
    return probs[:, pos]


def _passes(case: dict, kind: str, p: float, p_variant: float | None) -> bool:
    """Whether one case behaves as its test expects."""
    if kind == "DIR":
        return p_variant < p
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

    suite, lexicon = _load("suite.json"), _load("lexicon.json")
    results = []
    for test in suite["tests"]:
        kind = test["kind"]
        cases = _build_cases(test, lexicon, suite["n_per_test"])
        variants = [c["variant"] for c in cases if "variant" in c]
        scores = _predict(predict_proba, [c["text"] for c in cases] + variants, pos)
        p_texts, p_variants = scores[: len(cases)], scores[len(cases) :]

        failures = []
        for i, case in enumerate(cases):
            p = float(p_texts[i])
            p_variant = float(p_variants[i]) if variants else None
            if _passes(case, kind, p, p_variant):
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
                "description": test["description"],
                "n": len(cases),
                "failures": len(failures),
                "failure_rate": len(failures) / len(cases),
                "examples": failures[:max_examples],
            }
        )
    total = sum(r["n"] for r in results)
    return {
        "tests": results,
        "overall_failure_rate": sum(r["failures"] for r in results) / total,
    }
