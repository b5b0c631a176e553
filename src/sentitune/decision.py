"""Decisions: how a run turns probabilities into answers, and when a person should look.

Every rule lives here, once, and every stage (training fits it, predict and serve apply
it, evaluate chooses a review threshold with it) calls it:

- single-label answers are the most probable class; multi-label answers are the labels at
  or over their own decision threshold (`fit_label_thresholds` on validation), or, when no
  label reaches its threshold, the one label nearest to passing (`decide`);
- the confidence of an answer is its top probability, or for multi-label the distance of
  the label probability nearest its threshold;
- an answer skips review when its confidence reaches `accept_cut(review_threshold)`, and,
  when the decision says so, it was not truncated (`review_confidence`);
- `threshold_for_target` picks the lowest review threshold whose accepted validation
  answers reach a target accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from sentitune.errors import SentituneError

DEFAULT_REVIEW_THRESHOLD = 0.8


@dataclass(frozen=True)
class Decision:
    """How a run turns probabilities into answers; saved as decision.json."""

    review_threshold: float = DEFAULT_REVIEW_THRESHOLD
    label_thresholds: list[float] | None = None  # multi-label: one per label
    temperature: float = 1.0  # fitted on validation, already folded into the saved head
    # A text cut to max_length was judged on its start only: with this on, it always goes
    # to a person, however confident the model is.
    review_truncated: bool = False


def combined_decision(decisions: Sequence[Decision]) -> Decision:
    """The decision of several runs answering as one (an ensemble): the first one's review
    threshold, the mean of the multi-label thresholds, and review of truncated texts when
    any member asks for it. The temperatures are already folded into each member's head."""
    if len(decisions) == 1:
        return decisions[0]
    cuts = [d.label_thresholds for d in decisions]
    return Decision(
        review_threshold=decisions[0].review_threshold,
        label_thresholds=(np.mean(cuts, axis=0).round(6).tolist()
                          if all(c is not None for c in cuts) else None),
        temperature=1.0,
        review_truncated=any(d.review_truncated for d in decisions))


def overridden(decision: Decision, task: str, n_labels: int, *,
               review_threshold: float | None = None, threshold: float | None = None,
               review_truncated: bool | None = None) -> Decision:
    """`decision` with the settings given in place of its own (None: keep its own).
    `threshold` sets every multi-label decision threshold and is refused for other tasks."""
    if threshold is not None and task != "multilabel":
        raise SentituneError(
            f"a decision threshold applies to multi-label runs; this run is {task} "
            "(its label is the most probable class); use --review-threshold instead")
    if review_threshold is None and not 0 <= decision.review_threshold <= 1:
        raise SentituneError(f"the run's review threshold {decision.review_threshold} is not "
                             "between 0 and 1 (decision.json); give --review-threshold or "
                             "rerun `sentitune evaluate --target-accuracy`")
    changes = {"review_threshold": review_threshold, "review_truncated": review_truncated,
               "label_thresholds": (None if threshold is None
                                    else label_cuts(decision, n_labels, threshold).tolist())}
    return replace(decision, **{k: v for k, v in changes.items() if v is not None})


def accept_cut(review_threshold: float, task: str) -> float:
    """The confidence an answer needs to skip review: the top probability for single-label
    tasks; for multi-label ones every label's distance from its decision threshold."""
    return (1 - review_threshold) / 2 if task == "multilabel" else review_threshold


def review_confidence(confidence: np.ndarray, truncated, review_truncated: bool
                      ) -> np.ndarray:
    """The confidence review is judged on: none at all (-inf) for a truncated text when
    the decision sends truncated texts to review."""
    if not review_truncated:
        return confidence
    return np.where(np.asarray(truncated, dtype=bool), -np.inf, confidence)


def label_cuts(decision: Decision, n_labels: int, threshold: float | None = None) -> np.ndarray:
    """Multi-label decision thresholds: the run's tuned ones, or `threshold` for all."""
    if threshold is not None:
        if not 0 < threshold < 1:
            raise SentituneError(f"--threshold must be between 0 and 1, got {threshold}")
        return np.full(n_labels, float(threshold))
    return np.asarray(decision.label_thresholds or [0.5] * n_labels, dtype=float)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def fallback_labels(probs: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Per row, the label nearest to passing its own threshold: the largest
    logit(p) - logit(cut). Under one cut for every label (`--threshold`) that is simply the
    most probable label. Measured in logits, the choice does not change when every cut is
    shifted by the same logit amount (`fit_label_thresholds`)."""
    return (_logit(probs) - _logit(cuts)).argmax(axis=1)


def multilabel_answers(probs: np.ndarray, cuts: np.ndarray, fallback: bool = True
                       ) -> np.ndarray:
    """0/1 rows: the labels with probability >= their cut; with `fallback`, a row where no
    label passes gets its `fallback_labels` label, so every answer carries one label."""
    probs = np.asarray(probs, dtype=float)
    cuts = np.asarray(cuts, dtype=float)
    chosen = (probs >= cuts).astype(int)
    if fallback and chosen.shape[1]:
        empty = np.flatnonzero(chosen.sum(axis=1) == 0)
        chosen[empty, fallback_labels(probs[empty], cuts)] = 1
    return chosen


def decide(probs: np.ndarray, task: str, cuts: np.ndarray | None, *, fallback: bool = True
           ) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, confidence) for an (n, labels) probability matrix: class ids and top
    probabilities, or for multi-label 0/1 rows (see `multilabel_answers`: with `fallback`,
    the default everywhere sentitune answers, never an empty row, also under a single
    `--threshold`) and the margin to the nearest threshold."""
    if task == "multilabel":
        return (multilabel_answers(probs, cuts, fallback),
                multilabel_uncertainty(probs, cuts))
    return probs.argmax(axis=1), probs.max(axis=1)


def _accepted_stats(
    confidence: np.ndarray, correct: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct confidence t (descending): t, coverage and accuracy of conf >= t.

    A confidence of -inf (see `review_confidence`) is never accepted, so it is no candidate
    threshold; it still counts in the coverage's denominator.
    """
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    if confidence.ndim != 1 or len(confidence) == 0 or confidence.shape != correct.shape:
        raise SentituneError(
            f"confidence and correct must be equal, non-empty 1-D arrays, got shapes "
            f"{confidence.shape} and {correct.shape}"
        )
    order = np.argsort(-confidence, kind="stable")
    conf_sorted = confidence[order]
    hits = np.cumsum(correct[order])
    # The last position of each run of equal confidences: accepting t accepts all ties.
    last = np.flatnonzero(np.append(conf_sorted[1:] != conf_sorted[:-1], True))
    last = last[np.isfinite(conf_sorted[last])]
    accepted = last + 1
    return conf_sorted[last], accepted / len(confidence), hits[last] / accepted


def coverage_accuracy_curve(
    confidence: np.ndarray, correct: np.ndarray, max_points: int = 101
) -> list[dict[str, float]]:
    """Accuracy on the accepted examples (confidence >= threshold) against their share.

    One point per distinct confidence, from the strictest threshold to accepting all,
    thinned to about `max_points` evenly spread points (the end points are kept).
    """
    thresholds, coverage, accuracy = _accepted_stats(confidence, correct)
    if not len(thresholds):  # nothing can be accepted
        return []
    keep = np.unique(np.linspace(0, len(thresholds) - 1, max_points).round().astype(int))
    return [
        {
            "threshold": float(thresholds[i]),
            "coverage": float(coverage[i]),
            "accuracy": float(accuracy[i]),
        }
        for i in keep
    ]


def threshold_for_target_accuracy(
    confidence: np.ndarray, correct: np.ndarray, target: float
) -> dict[str, float | bool | None]:
    """The lowest confidence threshold whose accepted set reaches `target` accuracy.

    Examples with confidence >= threshold are accepted, the rest go to review; the lowest
    such threshold accepts the most. The threshold is the lowest accepted confidence.
    When no threshold reaches the target, ``reached`` is False and the threshold lies just
    above the highest confidence: everything goes to review.
    """
    if not 0 < target <= 1:
        raise SentituneError(f"target accuracy must be in (0, 1], got {target}")
    thresholds, coverage, accuracy = _accepted_stats(confidence, correct)
    # Small tolerance so a target of exactly 0.9 is met by 9/10 despite float rounding.
    ok = np.flatnonzero(accuracy >= target - 1e-12)
    if len(ok) == 0:
        return {
            "threshold": float(np.nextafter(thresholds[0], np.inf)) if len(thresholds) else 1.0,
            "coverage": 0.0,
            "accuracy_accepted": None,
            "reached": False,
        }
    best = ok[-1]  # thresholds descend, so the last hit is the lowest threshold
    return {
        "threshold": float(thresholds[best]),
        "coverage": float(coverage[best]),
        "accuracy_accepted": float(accuracy[best]),
        "reached": True,
    }


def _best_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
    """The threshold (predict scores >= t) maximising F1; ties go to the one nearest 0.5.

    Every split between consecutive distinct scores is a candidate; within its interval
    the threshold is 0.5 when 0.5 lies inside, else the midpoint, for margin on new data.
    """
    values = np.unique(scores)  # ascending
    n_pos = positive.sum()
    # Predicting scores >= values[j]: how many are predicted, and how many of those are right.
    order = np.argsort(scores, kind="stable")
    pos_from_top = np.cumsum(positive[order][::-1])[::-1]  # positives at sorted index >= i
    start = np.searchsorted(scores[order], values, side="left")
    predicted = len(scores) - start
    f1 = 2 * pos_from_top[start] / (predicted + n_pos)

    lower = np.concatenate([[min(0.0, values[0])], values[:-1]])
    inside = (lower < 0.5) & (values >= 0.5)
    candidates = np.where(inside, 0.5, (lower + values) / 2)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


# A per-label threshold tuned on fewer positive examples than this fits noise: on 600
# GoEmotions rows every tuned threshold sat near 0.47 and predictions carried 17.9 labels
# against 1.18 in truth. Such labels keep the 0.5 fallback.
MIN_THRESHOLD_SUPPORT = 10


def tune_label_thresholds(probs: np.ndarray, y_true: np.ndarray,
                          min_support: int = MIN_THRESHOLD_SUPPORT) -> np.ndarray:
    """Per-label thresholds maximising each label's validation F1 (multi-label models).

    `probs` are (n, L) sigmoid outputs and `y_true` the (n, L) 0/1 targets. Labels with
    fewer than `min_support` positive examples keep 0.5: too few to tune on.
    """
    probs = np.asarray(probs, dtype=float)
    y_true = np.asarray(y_true).astype(bool)
    if probs.ndim != 2 or probs.shape != y_true.shape or len(probs) == 0:
        raise SentituneError(
            f"probs and targets must be equal, non-empty (n, labels) arrays, got shapes "
            f"{probs.shape} and {y_true.shape}"
        )
    return np.array(
        [
            _best_threshold(probs[:, j], y_true[:, j])
            if y_true[:, j].sum() >= min_support else 0.5
            for j in range(probs.shape[1])
        ]
    )


# Multi-label answers carrying more than this many times the true number of labels (or
# fewer than 1/this) on validation are not to be trusted (`fit_label_thresholds`).
CARDINALITY_FACTOR = 2.0
# `fit_label_thresholds` tries the joint shifts that put this many labels per row (before
# the fallback) over their cuts: 0, 0.05, 0.1, ... up to every label.
CARDINALITY_STEP = 0.05


def candidate_shifts(probs: np.ndarray, base: np.ndarray,
                     step: float = CARDINALITY_STEP) -> np.ndarray:
    """Joint logit shifts s of the cuts `base`: 0, and for every c = 0, step, 2 step, ...
    up to the number of labels, the shift that leaves round(c n) of the n rows' (row,
    label) cells at or over sigmoid(logit(base) + s) (ties: all of them), midway between
    neighbouring margins. A grid in labels per row, not in s: how far a shift moves the
    cardinality depends on how the probabilities crowd around the cuts."""
    margins = np.sort((_logit(probs) - _logit(base)).ravel())[::-1]  # descending
    n, cells = probs.shape[0], margins.size
    counts = np.unique(np.clip(np.round(np.arange(0, probs.shape[1] + step / 2, step) * n),
                               0, cells).astype(int))
    padded = np.concatenate([[margins[0] + 1.0], margins, [margins[-1] - 1.0]])
    # k cells pass when s lies in (margins[k], margins[k - 1]]: take the middle.
    shifts = (padded[counts] + padded[counts + 1]) / 2
    return np.unique(np.concatenate([[0.0], shifts]))


def cardinality(y_true: np.ndarray, y_pred: np.ndarray, factor: float = CARDINALITY_FACTOR,
                fallback_rows: np.ndarray | None = None) -> dict:
    """Mean labels per row in truth and in the answers, their ratio, whether it lies within
    [1/factor, factor], the share of answers with no label, and (given `fallback_rows`)
    the share answered by the fallback."""
    true = float(np.asarray(y_true).sum(axis=1).mean())
    predicted = float(np.asarray(y_pred).sum(axis=1).mean())
    ratio = predicted / true if true > 0 else None
    out = {"true": true, "predicted": predicted, "ratio": ratio,
           "within_2x" if factor == 2 else f"within_{factor:g}x":
           ratio is not None and 1 / factor - 1e-12 <= ratio <= factor + 1e-12,
           "no_label_share": float((np.asarray(y_pred).sum(axis=1) == 0).mean())}
    if fallback_rows is not None:
        out["fallback_share"] = float(np.mean(fallback_rows))
    return out


@dataclass(frozen=True)
class ThresholdFit:
    """What `fit_label_thresholds` chose, and how it fares on the rows it was fitted on."""

    thresholds: np.ndarray
    logit_shift: float
    constraint_met: bool
    cardinality: dict  # `cardinality` of the chosen answers, fallback share included
    f1_macro: float
    f1_micro: float
    f1_macro_unshifted: float  # the per-label F1 thresholds alone, with the fallback

    def report(self) -> dict:
        return {
            "rule": "per-label F1 thresholds, shifted jointly in logit space to the best "
                    f"validation macro-F1 within {CARDINALITY_FACTOR:g}x the true cardinality; "
                    "a row with no label over its cut answers the label nearest its cut",
            "logit_shift": self.logit_shift,
            "constraint_met": self.constraint_met,
            "f1_macro": self.f1_macro,
            "f1_micro": self.f1_micro,
            "f1_macro_unshifted": self.f1_macro_unshifted,
            "cardinality": self.cardinality,
        }


def _f1s(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(macro, micro) F1 of 0/1 matrices, 0 for a label neither true nor predicted (as
    sklearn with zero_division=0)."""
    tp = (y & pred).sum(axis=0)
    denominator = y.sum(axis=0) + pred.sum(axis=0)
    per_label = np.divide(2 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0)
    total = denominator.sum()
    return float(per_label.mean()), float(2 * tp.sum() / total) if total else 0.0


def fit_label_thresholds(probs: np.ndarray, y_true: np.ndarray,
                         factor: float = CARDINALITY_FACTOR,
                         min_support: int = MIN_THRESHOLD_SUPPORT,
                         fallback: bool = True) -> ThresholdFit:
    """Multi-label decision thresholds whose answers carry about as many labels as the truth.

    The rule, exactly:

    1. t0 = `tune_label_thresholds(probs, y_true, min_support)`: each label's F1-optimal
       threshold (0.5 for labels with fewer than `min_support` positives).
    2. Candidates: t(s) = sigmoid(logit(t0) + s), clipped to [1e-6, 1 - 1e-6], for every
       joint logit shift s of `candidate_shifts` (0, and the shifts putting 0, 0.05,
       0.1, ... labels per row over the cuts); answers are `multilabel_answers(probs,
       t(s), fallback)`, so a row where no label passes answers the label nearest its cut.
    3. Feasible: mean predicted labels per row within [1/factor, factor] times the true
       mean. The chosen s is the feasible one with the best macro-F1 on these rows (ties:
       the smallest |s|, then the smaller s).
    4. When no s is feasible (a validation set with mostly empty label sets, say), the s
       whose cardinality ratio is nearest the band in log scale (ties: best macro-F1) is
       chosen and `constraint_met` is False: the caller warns and records it.

    Per-label F1 cuts fitted on little validation data go low (any rare positive is worth
    predicting), and labels that keep 0.5 under inverse-frequency class weights fire often:
    the issue saw 3.6 labels per text against 1.2 on 600 GoEmotions rows, the benchmark
    (benchmarks/multilabel_thresholds.py) 12.9 against 1.17. One shared shift keeps
    the labels' relative order of cuts, costs one parameter, and `fallback_labels` does not
    depend on it.
    """
    probs = np.asarray(probs, dtype=float)
    y = np.asarray(y_true).astype(bool)
    base = tune_label_thresholds(probs, y, min_support)
    logit_base = _logit(base)
    true_card = float(y.sum(axis=1).mean())
    rows = []
    for s in candidate_shifts(probs, base):
        cuts = np.clip(1 / (1 + np.exp(-(logit_base + s))), 1e-6, 1 - 1e-6)
        pred = multilabel_answers(probs, cuts, fallback).astype(bool)
        macro, micro = _f1s(y, pred)
        predicted = float(pred.sum(axis=1).mean())
        if true_card > 0 and predicted > 0:
            distance = max(0.0, abs(np.log(predicted / true_card)) - np.log(factor) - 1e-12)
        else:
            distance = 0.0 if predicted == true_card else np.inf
        rows.append((float(s), cuts, macro, micro, distance))
    feasible = [r for r in rows if r[4] == 0]
    met = bool(feasible) and true_card > 0
    if met:
        s, cuts, macro, micro, _ = min(feasible, key=lambda r: (-r[2], abs(r[0]), r[0]))
    else:
        s, cuts, macro, micro, _ = min(rows, key=lambda r: (r[4], -r[2], abs(r[0]), r[0]))
    pred = multilabel_answers(probs, cuts, fallback)
    fallback_rows = (probs >= cuts).sum(axis=1) == 0
    unshifted = next(r for r in rows if r[0] == 0)
    return ThresholdFit(
        thresholds=cuts, logit_shift=s, constraint_met=met,
        cardinality=cardinality(y, pred, factor, fallback_rows if fallback else None),
        f1_macro=macro, f1_micro=micro, f1_macro_unshifted=unshifted[2])


def multilabel_uncertainty(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per example, the distance of the label probability closest to its threshold.

    Small means at least one label decision is a near coin-flip: review those first.
    """
    probs = np.asarray(probs, dtype=float)
    thresholds = np.asarray(thresholds, dtype=float)
    if probs.ndim != 2 or thresholds.shape != (probs.shape[1],):
        raise SentituneError(
            f"need (n, labels) probabilities and one threshold per label, got shapes "
            f"{probs.shape} and {thresholds.shape}"
        )
    return np.abs(probs - thresholds).min(axis=1)


def threshold_for_target(confidence: np.ndarray, correct: np.ndarray, target: float,
                         task: str) -> float:
    """The review threshold whose accepted answers reach `target` accuracy (see
    `threshold_for_target_accuracy`), expressed so that `accept_cut` reproduces it."""
    cut = threshold_for_target_accuracy(confidence, correct, target)["threshold"]
    if task != "multilabel":
        return cut
    # Predict accepts margins >= (1 - threshold) / 2, which float rounding puts near, not
    # on, `cut`: nudge the threshold until that accepts the margins >= cut and no other.
    below = confidence[confidence < cut]
    floor = below.max() if len(below) else -np.inf
    threshold = 1 - 2 * cut
    while accept_cut(threshold, task) > cut:
        threshold = float(np.nextafter(threshold, np.inf))
    while accept_cut(threshold, task) <= floor:
        threshold = float(np.nextafter(threshold, -np.inf))
    return threshold


def review_stats(confidence: np.ndarray, correct: np.ndarray, threshold: float,
                 task: str) -> dict:
    """Share of answers accepted under `threshold` and their accuracy (None if none)."""
    accepted = confidence >= accept_cut(threshold, task)
    return {
        "n": len(accepted),
        "coverage": float(accepted.mean()),
        "accuracy_accepted": float(correct[accepted].mean()) if accepted.any() else None,
    }
