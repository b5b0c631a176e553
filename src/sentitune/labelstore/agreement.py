"""How far annotators agree, and the one label a text gets from several annotations.

Agreement is chance-corrected: Cohen's kappa (scikit-learn) when two annotators labelled,
Krippendorff's alpha (nominal; the `krippendorff` package) when more did, which also
handles texts not every annotator saw. Multi-label stores are judged per label (chosen or
not) and averaged. Skips count for nothing.

The consensus label of a text is its annotators' majority; a tie leaves the text out of
exports and training until someone breaks it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np


def answers_by_item(annotations: Sequence[dict], annotator: str | None = None
                    ) -> dict[int, dict[str, list[str]]]:
    """item id -> annotator -> labels, skips left out (only `annotator`'s when given)."""
    found: dict[int, dict[str, list[str]]] = defaultdict(dict)
    for row in annotations:
        if row["skipped"] or (annotator is not None and row["annotator"] != annotator):
            continue
        found[row["item_id"]][row["annotator"]] = row["labels"]
    return dict(found)


def consensus(answers: dict[str, list[str]], task: str, labels: Sequence[str]
              ) -> tuple[list[str] | None, float]:
    """The majority label(s) of one text and the share of annotators who gave them;
    (None, share) on a tie."""
    votes = list(answers.values())
    if task != "multilabel":
        counts = Counter(v[0] for v in votes).most_common()
        if len(counts) > 1 and counts[0][1] == counts[1][1]:
            return None, counts[0][1] / len(votes)
        return [counts[0][0]], counts[0][1] / len(votes)
    chosen, agreeing = [], []
    for name in labels:
        yes = sum(name in v for v in votes)
        if 2 * yes == len(votes):
            return None, 0.5
        if 2 * yes > len(votes):
            chosen.append(name)
        agreeing.append(max(yes, len(votes) - yes) / len(votes))
    return chosen, float(min(agreeing))


def _kappa(first: list, second: list) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    if len(set(first) | set(second)) < 2:
        return None  # one label everywhere: chance agreement is total, kappa undefined
    return float(cohen_kappa_score(first, second))


def _alpha(matrix: np.ndarray) -> float | None:
    import krippendorff

    values = matrix[~np.isnan(matrix)]
    if len(np.unique(values)) < 2:
        return None
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"))


def agreement(annotations: Sequence[dict], labels: Sequence[str], task: str) -> dict:
    """Chance-corrected agreement over texts at least two annotators labelled."""
    by_item = answers_by_item(annotations)
    annotators = sorted({a for answers in by_item.values() for a in answers})
    shared = {item: answers for item, answers in by_item.items() if len(answers) >= 2}
    report: dict = {"annotators": len(annotators), "texts_compared": len(shared)}
    if len(annotators) < 2 or not shared:
        report["note"] = "agreement needs texts labelled by at least two annotators"
        return report
    # One column per text, one row per annotator; each label is a 0/1 "variable" for
    # multi-label stores, one variable of label indices otherwise.
    variables = ([(name, lambda v, n=name: float(n in v)) for name in labels]
                 if task == "multilabel" else [("label", lambda v: float(labels.index(v[0])))])
    scores: dict[str, float | None] = {}
    items = sorted(shared)
    for name, value in variables:
        matrix = np.full((len(annotators), len(items)), np.nan)
        for column, item in enumerate(items):
            for annotator, given in shared[item].items():
                matrix[annotators.index(annotator), column] = value(given)
        if len(annotators) == 2:
            both = ~np.isnan(matrix).any(axis=0)
            scores[name] = _kappa(list(matrix[0, both]), list(matrix[1, both]))
        else:
            scores[name] = _alpha(matrix)
    measure = "cohen_kappa" if len(annotators) == 2 else "krippendorff_alpha"
    defined = [s for s in scores.values() if s is not None]
    report[measure] = round(float(np.mean(defined)), 4) if defined else None
    if task == "multilabel":
        report[f"{measure}_per_label"] = {k: None if v is None else round(v, 4)
                                          for k, v in scores.items()}
    agreeing = [consensus(answers, task, labels)[1] for answers in shared.values()]
    report["observed_agreement"] = round(float(np.mean([a == 1.0 for a in agreeing])), 4)
    if report[measure] is None:
        report["note"] = "every compared text got the same label: agreement is undefined"
    return report
