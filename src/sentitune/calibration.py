"""Calibration and confidence thresholds: can the model's probabilities be trusted?

- ECE and reliability bins measure how far confidence is from accuracy.
- Temperature scaling (Guo et al. 2017) fixes over/under-confidence with one number T
  fitted on validation logits: probs = softmax(logits / T). T > 1 softens.
- Coverage/accuracy and `threshold_for_target_accuracy` turn confidence into a review
  queue: predictions below the threshold go to a person.
- For multi-label (sigmoid) models, per-label decision thresholds and an uncertainty
  score so the same review queue works.

Everything takes numpy arrays (or anything `np.asarray` accepts, e.g. CPU tensors).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from sentitune.errors import SentituneError

# Temperatures outside this range mean the logits are degenerate (e.g. all predictions
# right with growing margins, where NLL keeps falling as T -> 0); clamp instead of diverge.
T_MIN, T_MAX = 0.05, 20.0


def _probs_and_labels(probs: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate an (n, k) probability matrix and its n integer labels."""
    probs = np.asarray(probs, dtype=float)
    y_true = np.asarray(y_true)
    if probs.ndim != 2 or len(probs) == 0 or len(probs) != len(y_true):
        raise SentituneError(
            f"expected a non-empty (n, k) matrix and n labels, got shapes {probs.shape} and "
            f"{y_true.shape}; evaluate on at least one example"
        )
    return probs, y_true.astype(int)


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> list[dict]:
    """Top-label reliability diagram data: equal-width confidence bins (lower, upper].

    Each bin: ``lower``, ``upper``, ``count``, mean ``confidence`` and ``accuracy`` of its
    examples (None when the bin is empty).
    """
    probs, y_true = _probs_and_labels(probs, y_true)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    # Bin i holds (i/n, (i+1)/n]; confidence 0 cannot happen for a top label but clip anyway.
    index = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    bins = []
    for i in range(n_bins):
        members = index == i
        count = int(members.sum())
        bins.append(
            {
                "lower": i / n_bins,
                "upper": (i + 1) / n_bins,
                "count": count,
                "confidence": float(confidence[members].mean()) if count else None,
                "accuracy": float(correct[members].mean()) if count else None,
            }
        )
    return bins


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: count-weighted mean |accuracy - confidence| over equal-width bins."""
    bins = reliability_bins(probs, y_true, n_bins)
    total = sum(b["count"] for b in bins)
    return float(
        sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])
    )


def softmax_with_temperature(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, numerically stable."""
    if temperature <= 0:
        raise SentituneError(f"temperature must be > 0, got {temperature}")
    return softmax(np.asarray(logits, dtype=float) / temperature, axis=1)


def _nll(logits: np.ndarray, y_true: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of softmax(logits / temperature)."""
    log_probs = log_softmax(logits / temperature, axis=1)
    return float(-log_probs[np.arange(len(y_true)), y_true].mean())


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature T minimising validation NLL of softmax(logits / T), in [T_MIN, T_MAX].

    NLL is convex in 1/T, hence unimodal in log T, so a bounded scalar search (Brent) on
    log T finds the global minimum deterministically, with no learning rate to tune.
    """
    logits, y_true = _probs_and_labels(logits, y_true)
    result = minimize_scalar(
        lambda log_t: _nll(logits, y_true, float(np.exp(log_t))),
        bounds=(np.log(T_MIN), np.log(T_MAX)),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(result.x))


def _accepted_stats(
    confidence: np.ndarray, correct: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct confidence t (descending): t, coverage and accuracy of conf >= t."""
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
            "threshold": float(np.nextafter(thresholds[0], np.inf)),
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


def tune_label_thresholds(probs: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """Per-label thresholds maximising each label's validation F1 (multi-label models).

    `probs` are (n, L) sigmoid outputs and `y_true` the (n, L) 0/1 targets. Labels without
    a positive example keep 0.5: there is no F1 to optimise.
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
            _best_threshold(probs[:, j], y_true[:, j]) if y_true[:, j].any() else 0.5
            for j in range(probs.shape[1])
        ]
    )


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
