"""The behavioural suite as a generator: templates filled from word lists into test cases.

The templates (``checks/suite.json``) and word lists (``checks/lexicon.json``) are our own,
organised by the capabilities of CheckList (Ribeiro et al. 2020): vocabulary, robustness,
names/locations/numbers, temporal, negation, semantic roles, questions and fairness. The
same cases come out on every call (each test is seeded by its name). Other code may reuse
the word lists (e.g. data augmentation): `lexicon()`, `identity_terms()`, `negation_cues()`.

A test is MFT (each case expects a label), INV (a case's variant must get the same label)
or DIR (the variant's p(positive) must move `direction`, up or down, give or take
`tolerance`). A variant comes from a second template filled alike, a `perturbation` of the
text, or a `swap` of one word list's value for another of the same list.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import re
import string
from collections.abc import Callable, Iterator, Sequence
from importlib import resources

from sentitune.errors import SentituneError

IDENTITY_GROUPS = ("nationality", "religion", "race", "sexual_orientation", "gender")


def _load(name: str) -> dict:
    """One JSON file from the package's ``checks/`` data directory."""
    checks = resources.files("sentitune.evaluation").joinpath("checks")
    return json.loads(checks.joinpath(name).read_text("utf-8"))


@functools.cache
def _lexicon() -> dict:
    return _load("lexicon.json")


def lexicon() -> dict[str, list[str]]:
    """Every flat word list by name (thing, pos_adj, neg_adj, city, negation, ...)."""
    return {k: list(v) for k, v in _lexicon().items() if isinstance(v, list)}


def identity_terms() -> dict[str, list[str]]:
    """Identity terms by group (nationality, religion, race, sexual_orientation, gender),
    each usable as an adjective before a plural noun ("Muslim viewers")."""
    return {group: list(terms) for group, terms in _lexicon()["identity"].items()}


def negation_cues() -> list[str]:
    """Words that negate what follows them ("not", "never", "no longer", ...)."""
    return list(_lexicon()["negation"])


def _fill(templates: Sequence[str], words: dict[str, list[str]], k: int, seed: str
          ) -> Iterator[dict[str, str]]:
    """Up to `k` assignments of the fields of `templates`, sampled without replacement."""
    fields = sorted({f for t in templates for _, f, _, _ in string.Formatter().parse(t) if f})
    unknown = [f for f in fields if f not in words]
    if unknown:
        raise SentituneError(f"behavioural templates use unknown word lists {unknown}")
    combos = list(itertools.product(*(words[f] for f in fields)))
    for combo in random.Random(seed).sample(combos, min(k, len(combos))):
        yield dict(zip(fields, combo, strict=True))


def _typo(text: str, _words: dict) -> str:
    """Swap two adjacent, different letters inside one word of 4+ letters."""
    rng = random.Random(f"typo:{text}")
    words = [m for m in re.finditer(r"[A-Za-z]{4,}", text) if len(set(m.group())) > 1]
    word = rng.choice(words)
    spots = [i for i in range(word.start(), word.end() - 1) if text[i] != text[i + 1]]
    i = rng.choice(spots)
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


def _toggle_full_stop(text: str, _words: dict) -> str:
    """Remove final punctuation when present, else add a full stop."""
    stripped = text.rstrip(".!?")
    return stripped if stripped != text else text + "."


CONTRACTIONS = {"it is": "it's", "I am": "I'm", "do not": "don't", "would not": "wouldn't",
                "was not": "wasn't", "is not": "isn't", "did not": "didn't", "I have": "I've"}


def _contraction(text: str, _words: dict) -> str:
    """Contract every long form (it is -> it's); a text without one gets expanded."""
    def swap(pairs: dict[str, str], source: str) -> str:
        for long, short in pairs.items():
            source = re.sub(rf"\b{re.escape(long)}\b", short, source)
            source = re.sub(rf"\b{re.escape(long.capitalize())}\b", short.capitalize(), source)
        return source

    contracted = swap(CONTRACTIONS, text)
    return contracted if contracted != text else swap(
        {short: long for long, short in CONTRACTIONS.items()}, text)


def _url_and_handle(text: str, words: dict) -> str:
    rng = random.Random(f"url:{text}")
    return f"{rng.choice(words['handle'])} {text} {rng.choice(words['url'])}"


PERTURBATIONS: dict[str, Callable[[str, dict], str]] = {
    "typo": _typo, "punctuation": _toggle_full_stop, "contraction": _contraction,
    "url_and_handle": _url_and_handle,
}


def _variant_of(test: dict, group: dict, values: dict[str, str], base: str,
                words: dict[str, list[str]]) -> str:
    if "variant" in group:
        return group["variant"].format(**values)
    if "perturbation" in test:
        return PERTURBATIONS[test["perturbation"]](base, words)
    field = test["swap"]
    others = [w for w in words[field] if w != values[field]]
    return group["base"].format(**values | {field: random.Random(base).choice(others)})


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def build_cases(test: dict, words: dict[str, list[str]], n: int) -> list[dict]:
    """Concrete cases of one test: MFT {text, expect}; INV/DIR {text, variant}."""
    groups = test.get("cases") or test["pairs"]
    per_group = -(-n // len(groups))  # ceiling: at least n in total
    cases = []
    for i, group in enumerate(groups):
        seed = f"{test['name']}:{i}"
        if test["kind"] == "MFT":
            for values in _fill([group["template"]], words, per_group, seed):
                cases.append({"text": _sentence(group["template"].format(**values)),
                              "expect": group["expect"]})
            continue
        templates = [group["base"]] + ([group["variant"]] if "variant" in group else [])
        for values in _fill(templates, words, per_group, seed):
            base = _sentence(group["base"].format(**values))
            cases.append({"text": base, "variant": _sentence(
                _variant_of(test, group, values, base, words))})
    return cases[:n]


def _expanded(tests: list[dict]) -> Iterator[tuple[dict, dict[str, list[str]]]]:
    """Each test with its word lists; a test over `identity_groups` becomes one per group."""
    words = lexicon()
    for test in tests:
        if "identity_groups" not in test:
            yield test, words
            continue
        terms = identity_terms()
        for group in test["identity_groups"]:
            shown = group.replace("_", " ")
            yield (test | {"name": f"{test['name']}: {shown}",
                           "description": test["description"].format(group=shown)},
                   words | {"identity": terms[group]})


def generate_suite(n_per_test: int | None = None) -> list[dict]:
    """Every test with its cases: name, kind, capability, description, direction and
    tolerance (DIR), cases. `n_per_test` (default: the suite's own, 100) caps the cases."""
    suite = _load("suite.json")
    n = n_per_test or suite["n_per_test"]
    return [{"name": test["name"], "kind": test["kind"], "capability": test["capability"],
             "description": test["description"], "direction": test.get("direction", "down"),
             "tolerance": test.get("tolerance", 0.0),
             "cases": build_cases(test, words, n)}
            for test, words in _expanded(suite["tests"])]
