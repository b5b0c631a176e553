"""Multi-label decision thresholds (issue 22): a joint shift to a sane cardinality, and a
top-label fallback so no answer is empty. Pure functions, no model."""

from __future__ import annotations

import numpy as np
import pytest

from sentitune.decision import (
    CARDINALITY_FACTOR,
    Decision,
    candidate_shifts,
    cardinality,
    decide,
    fallback_labels,
    fit_label_thresholds,
    label_cuts,
    multilabel_answers,
    tune_label_thresholds,
)
from sentitune.metrics import classification_metrics


def over_predicting(n: int = 200, labels: int = 28, seed: int = 0):
    """Mostly one true label per row, probabilities inflated for every label (as
    inverse-frequency class weights do): F1-optimal cuts on so few rows over-predict."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, labels), dtype=int)
    y[np.arange(n), rng.integers(0, labels, n)] = 1
    y[rng.random((n, labels)) < 0.01] = 1
    logits = rng.normal(1.0, 1.0, (n, labels)) + 1.2 * y
    return 1 / (1 + np.exp(-logits)), y


def test_per_label_f1_cuts_over_predict_and_the_fit_brings_cardinality_within_2x():
    probs, y = over_predicting()
    before = tune_label_thresholds(probs, y)
    true = y.sum(axis=1).mean()
    assert multilabel_answers(probs, before, fallback=False).sum(axis=1).mean() > 2 * true

    fit = fit_label_thresholds(probs, y)
    pred = multilabel_answers(probs, fit.thresholds)
    ratio = pred.sum(axis=1).mean() / true
    assert fit.constraint_met and 1 / CARDINALITY_FACTOR <= ratio <= CARDINALITY_FACTOR
    assert fit.cardinality["within_2x"] and fit.cardinality["ratio"] == pytest.approx(ratio)
    assert fit.logit_shift > 0  # the cuts went up, all by the same logit amount
    logit = np.log(fit.thresholds / (1 - fit.thresholds))
    base = np.log(before / (1 - before))
    assert np.allclose(logit - base, fit.logit_shift)
    assert (pred.sum(axis=1) >= 1).all()


def test_the_chosen_shift_has_the_best_macro_f1_among_the_feasible_ones():
    probs, y = over_predicting(seed=1)
    fit = fit_label_thresholds(probs, y)
    t0 = tune_label_thresholds(probs, y)
    base = np.log(t0 / (1 - t0))
    true = y.sum(axis=1).mean()
    best = -1.0
    for s in candidate_shifts(probs, t0):
        m = classification_metrics(y, probs, "multilabel", [str(j) for j in range(28)],
                                   1 / (1 + np.exp(-(base + s))))
        if 0.5 <= m["label_cardinality_pred"] / true <= 2:
            best = max(best, m["f1_macro"])
    assert fit.f1_macro == pytest.approx(best)


def test_a_fit_that_already_satisfies_the_constraint_is_left_alone():
    rng = np.random.default_rng(2)
    y = (rng.random((300, 4)) < 0.3).astype(int)
    y[y.sum(axis=1) == 0, 0] = 1
    probs = np.clip(0.8 * y + rng.normal(0.1, 0.05, y.shape), 0.01, 0.99)  # well separated
    fit = fit_label_thresholds(probs, y)
    assert fit.logit_shift == 0 and fit.constraint_met
    assert np.allclose(fit.thresholds, tune_label_thresholds(probs, y))
    assert fit.f1_macro == fit.f1_macro_unshifted == 1.0


def test_an_unreachable_constraint_is_reported_not_raised():
    # Nine rows in ten truly carry no label: the fallback alone gives 1 label per row,
    # more than twice the truth's 0.1.
    y = np.zeros((100, 3), dtype=int)
    y[:10, 0] = 1
    probs = np.full((100, 3), 0.2)
    probs[:10, 0] = 0.9
    fit = fit_label_thresholds(probs, y)
    assert not fit.constraint_met and not fit.cardinality["within_2x"]
    assert fit.cardinality["predicted"] == 1.0 and fit.cardinality["fallback_share"] == 0.9
    assert fit.report()["constraint_met"] is False
    # Without the fallback the same data is easy.
    assert fit_label_thresholds(probs, y, fallback=False).constraint_met


def test_fallback_gives_every_row_one_label_nearest_its_cut():
    probs = np.array([[0.1, 0.2, 0.3],   # none passes: c is nearest its cut in logits
                      [0.6, 0.1, 0.1],   # a passes: no fallback
                      [0.45, 0.05, 0.1]])  # none: a is nearest (0.05 under 0.5)
    cuts = np.array([0.5, 0.5, 0.32])
    chosen = multilabel_answers(probs, cuts)
    assert chosen.tolist() == [[0, 0, 1], [1, 0, 0], [1, 0, 0]]
    assert (multilabel_answers(probs, cuts, fallback=False).sum(axis=1) == [0, 1, 0]).all()
    # Under one cut for every label the fallback is the most probable label.
    assert fallback_labels(probs, np.full(3, 0.9)).tolist() == probs.argmax(axis=1).tolist()
    # ... and a joint logit shift of the cuts does not change it.
    shifted = 1 / (1 + np.exp(-(np.log(cuts / (1 - cuts)) + 1.5)))
    assert fallback_labels(probs, shifted).tolist() == fallback_labels(probs, cuts).tolist()


def test_decide_applies_the_fallback_also_under_a_single_threshold():
    probs = np.array([[0.2, 0.4], [0.7, 0.9], [0.05, 0.01]])
    cuts = label_cuts(Decision(label_thresholds=[0.3, 0.3]), 2, threshold=0.95)
    chosen, confidence = decide(probs, "multilabel", cuts)
    assert chosen.tolist() == [[0, 1], [0, 1], [1, 0]]
    assert confidence == pytest.approx([0.55, 0.05, 0.9])
    no_fallback, _ = decide(probs, "multilabel", cuts, fallback=False)
    assert no_fallback.sum() == 0
    single, _ = decide(np.array([[0.2, 0.8]]), "binary", None)
    assert single.tolist() == [1]


def test_metrics_report_the_answers_cardinality_with_the_fallback():
    y = np.array([[1, 0], [0, 1], [1, 1]])
    probs = np.array([[0.4, 0.1], [0.2, 0.7], [0.9, 0.8]])
    m = classification_metrics(y, probs, "multilabel", ["a", "b"])
    assert m["label_cardinality_pred"] == m["cardinality"]["predicted"] == pytest.approx(4 / 3)
    assert m["cardinality"] == pytest.approx({
        "true": 4 / 3, "predicted": 4 / 3, "ratio": 1.0, "within_2x": True,
        "no_label_share": 0.0, "fallback_share": 1 / 3})
    assert m["exact_match"] == 1.0  # the first row's a came from the fallback
    old = classification_metrics(y, probs, "multilabel", ["a", "b"], fallback=False)
    assert old["cardinality"]["no_label_share"] == pytest.approx(1 / 3)
    assert "fallback_share" not in old["cardinality"]


def test_cardinality_without_true_labels_has_no_ratio():
    c = cardinality(np.zeros((2, 2)), np.array([[1, 0], [0, 0]]))
    assert c["ratio"] is None and not c["within_2x"] and c["no_label_share"] == 0.5


def test_candidate_shifts_step_through_labels_per_row():
    rng = np.random.default_rng(3)
    probs = rng.uniform(0.49, 0.51, (50, 4))  # crowded around the cuts: tiny shifts matter
    base = np.full(4, 0.5)
    shifts = candidate_shifts(probs, base, step=0.5)
    assert 0.0 in shifts and np.all(np.diff(shifts) > 0)
    per_row = sorted((probs >= 1 / (1 + np.exp(-s))).sum() / 50 for s in shifts if s != 0)
    assert per_row == pytest.approx([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4])
