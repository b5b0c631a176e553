"""Calibration metrics, temperature scaling, review thresholds and multi-label thresholds."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from sentitune.calibration import (
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    softmax_with_temperature,
)
from sentitune.decision import (
    coverage_accuracy_curve,
    multilabel_uncertainty,
    threshold_for_target_accuracy,
    tune_label_thresholds,
)
from sentitune.errors import SentituneError


def calibrated_logits(n=20000, k=3, scale=2.0, seed=0):
    """Logits with labels drawn from softmax(logits): calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=scale, size=(n, k))
    probs = softmax_with_temperature(logits)
    labels = (rng.random(n)[:, None] > probs.cumsum(axis=1)).sum(axis=1)
    return logits, labels


def test_ece_of_calibrated_data_is_near_zero():
    logits, labels = calibrated_logits()
    assert expected_calibration_error(softmax_with_temperature(logits), labels) < 0.02


def test_ece_hand_computed():
    # Two examples in bin (0.6, 0.667], one right; two in (0.933, 1], both right.
    probs = np.array([[0.65, 0.35], [0.65, 0.35], [0.95, 0.05], [0.05, 0.95]])
    labels = np.array([0, 1, 0, 1])
    expected = 0.5 * abs(0.5 - 0.65) + 0.5 * abs(1.0 - 0.95)
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)


def test_reliability_bins_cover_everything():
    logits, labels = calibrated_logits(n=1000)
    bins = reliability_bins(softmax_with_temperature(logits), labels, n_bins=10)
    assert len(bins) == 10 and sum(b["count"] for b in bins) == 1000
    assert all(b["confidence"] is None for b in bins if b["count"] == 0)
    assert bins[0]["lower"] == 0 and bins[-1]["upper"] == 1


def test_temperature_of_calibrated_data_is_about_one():
    logits, labels = calibrated_logits()
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.05)


def test_overconfident_logits_get_softened():
    logits, labels = calibrated_logits()
    overconfident = logits * 3
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(softmax_with_temperature(overconfident), labels)
    after = expected_calibration_error(softmax_with_temperature(overconfident, temperature), labels)
    assert after < before / 3


def test_temperature_is_clamped_and_deterministic_on_separable_data():
    logits = np.array([[3.0, -3.0], [-2.0, 2.0]])
    labels = np.array([0, 1])
    assert fit_temperature(logits, labels) == fit_temperature(logits, labels) < 0.1


def test_bad_inputs_raise():
    with pytest.raises(SentituneError, match="non-empty"):
        expected_calibration_error(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(SentituneError, match="temperature"):
        softmax_with_temperature(np.zeros((1, 2)), 0)
    with pytest.raises(SentituneError, match="target"):
        threshold_for_target_accuracy([0.9], [True], 1.5)


def review_data(n=2000, seed=1):
    """Confidence that predicts correctness: P(correct) = confidence."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    return confidence, rng.random(n) < confidence


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_threshold_delivers_target_with_maximal_coverage(target):
    confidence, correct = review_data()
    result = threshold_for_target_accuracy(confidence, correct, target)
    accepted = confidence >= result["threshold"]
    review = confidence < result["threshold"]
    assert result["reached"]
    assert accepted.sum() + review.sum() == len(confidence)
    assert correct[accepted].mean() >= target
    assert result["accuracy_accepted"] == pytest.approx(correct[accepted].mean())
    assert result["coverage"] == pytest.approx(accepted.mean())
    # Any lower threshold (accepting more) would miss the target.
    for lower in np.unique(confidence[review])[-50:]:
        assert correct[confidence >= lower].mean() < target


def test_unreachable_target_sends_everything_to_review():
    confidence = np.array([0.9, 0.8, 0.7])
    result = threshold_for_target_accuracy(confidence, np.array([False, True, True]), 1.0)
    assert result["reached"] is False and result["coverage"] == 0.0
    assert not (confidence >= result["threshold"]).any()


def test_threshold_accepts_all_ties():
    result = threshold_for_target_accuracy([0.9, 0.9, 0.6], [True, False, True], 0.5)
    assert result == {"threshold": 0.6, "coverage": 1.0, "accuracy_accepted": 2 / 3,
                      "reached": True}


def test_coverage_accuracy_curve():
    confidence, correct = review_data()
    curve = coverage_accuracy_curve(confidence, correct, max_points=21)
    assert len(curve) == 21
    assert curve[-1]["coverage"] == 1.0
    assert curve[-1]["accuracy"] == pytest.approx(correct.mean())
    coverages = [p["coverage"] for p in curve]
    assert coverages == sorted(coverages)
    # Confidence tracks correctness, so the strictest end is the most accurate.
    assert curve[0]["accuracy"] > curve[-1]["accuracy"]


def test_label_thresholds_beat_half():
    # Label 0 scores run low, label 1 high: 0.5 is wrong for both; label 2 never positive.
    rng = np.random.default_rng(2)
    n = 1000
    targets = np.zeros((n, 3), dtype=int)
    targets[:, 0] = rng.random(n) < 0.3
    targets[:, 1] = rng.random(n) < 0.3
    probs = np.column_stack(
        [
            np.clip(0.15 + 0.25 * targets[:, 0] + rng.normal(0, 0.08, n), 0, 1),
            np.clip(0.60 + 0.25 * targets[:, 1] + rng.normal(0, 0.08, n), 0, 1),
            rng.random(n),
        ]
    )
    thresholds = tune_label_thresholds(probs, targets)
    assert 0.2 < thresholds[0] < 0.4 and 0.6 < thresholds[1] < 0.85
    assert thresholds[2] == 0.5
    for j in (0, 1):
        tuned = f1_score(targets[:, j], probs[:, j] >= thresholds[j])
        default = f1_score(targets[:, j], probs[:, j] >= 0.5)
        assert tuned > default + 0.1


def test_label_threshold_ties_prefer_half():
    # Any threshold in (0.2, 0.8] separates perfectly; 0.5 lies inside, so 0.5 it is.
    probs = np.array([[0.1], [0.2], [0.8], [0.9]])
    truth = np.array([[0], [0], [1], [1]])
    assert tune_label_thresholds(probs, truth, min_support=1)[0] == 0.5
    # Perfect split only in (0.6, 0.7]: the midpoint, not the edge.
    probs = np.array([[0.55], [0.6], [0.7], [0.9]])
    assert tune_label_thresholds(probs, truth, min_support=1)[0] == pytest.approx(0.65)
    # Two positives are too few to tune on by default: the 0.5 fallback.
    assert tune_label_thresholds(probs, truth)[0] == 0.5


def test_rare_labels_keep_the_fallback_threshold():
    rng = np.random.default_rng(0)
    targets = np.zeros((400, 2), dtype=int)
    targets[:9, 0] = 1  # 9 positives: below MIN_THRESHOLD_SUPPORT
    targets[:40, 1] = 1
    probs = np.clip(0.2 + 0.2 * targets + rng.normal(0, 0.05, targets.shape), 0, 1)
    thresholds = tune_label_thresholds(probs, targets)
    assert thresholds[0] == 0.5 and thresholds[1] < 0.45


def test_multilabel_uncertainty():
    probs = np.array([[0.9, 0.1], [0.52, 0.0], [0.7, 0.35]])
    result = multilabel_uncertainty(probs, np.array([0.5, 0.3]))
    np.testing.assert_allclose(result, [0.2, 0.02, 0.05])
    assert np.argmin(result) == 1


def test_review_confidence_never_accepts_a_truncated_text():
    from sentitune.decision import review_confidence, review_stats, threshold_for_target

    confidence = np.array([0.99, 0.95, 0.9, 0.7, 0.6])
    correct = np.array([True, True, True, False, True])
    truncated = [True, False, False, False, False]
    assert np.array_equal(review_confidence(confidence, truncated, False), confidence)
    gated = review_confidence(confidence, truncated, True)
    assert gated[0] == -np.inf and np.array_equal(gated[1:], confidence[1:])
    threshold = threshold_for_target(gated, correct, 1.0, "binary")
    assert threshold == 0.9  # accepts the two sure, untruncated answers
    stats = review_stats(gated, correct, threshold, "binary")
    assert stats["coverage"] == 2 / 5 and stats["accuracy_accepted"] == 1.0
    # Nothing but truncated texts: nothing can be accepted, and nothing crashes.
    everything = review_confidence(confidence, [True] * 5, True)
    assert threshold_for_target_accuracy(everything, correct, 0.5)["reached"] is False
    assert coverage_accuracy_curve(everything, correct) == []


def test_a_temperature_that_worsens_calibration_is_not_folded():
    """It lowers the NLL it was fitted for but raises the ECE: the run keeps T = 1."""
    from sentitune.training import fit_decision

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 40)
    margin = (y * 2 - 1) * rng.uniform(0.5, 3, 40) * np.where(rng.random(40) < 0.8, 1, -1)
    logits = np.stack([np.zeros(40), margin], axis=1)
    # model=None: folding would need a model, and a refused temperature touches none.
    decision, calibration = fit_decision(None, logits, y, "binary")
    assert calibration["nll_with_fitted_temperature"] < calibration["nll"]
    assert calibration["ece_with_fitted_temperature"] > calibration["ece"]
    assert not calibration["applied"] and decision.temperature == 1.0
    assert calibration["ece_after_temperature"] == calibration["ece"]
