"""Calibration: can the model's probabilities be trusted?

- ECE and reliability bins measure how far confidence is from accuracy.
- Temperature scaling (Guo et al. 2017) fixes over/under-confidence with one number T
  fitted on validation logits: probs = softmax(logits / T). T > 1 softens.

How probabilities then become decisions (thresholds, review) is `sentitune.decision`.

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


def nll(logits: np.ndarray, y_true: np.ndarray, temperature: float) -> float:
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
        lambda log_t: nll(logits, y_true, float(np.exp(log_t))),
        bounds=(np.log(T_MIN), np.log(T_MAX)),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(result.x))
