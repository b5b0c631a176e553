"""Classification metrics for every task type, from probabilities.

Training (per epoch) and evaluation call the same function, so the numbers in
history.csv, metrics.json and evaluation reports always mean the same thing.
`f1` is the headline F1: binary F1 of the positive class for binary tasks, macro F1
otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn import metrics as skm

from sentitune.decision import cardinality, multilabel_answers


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Sigmoid per label for multi-label tasks, softmax over the classes otherwise."""
    return expit(logits) if task == "multilabel" else softmax(logits, axis=-1)


def multi_hot(label_lists: Sequence[Sequence[int]], n_labels: int) -> np.ndarray:
    out = np.zeros((len(label_lists), n_labels), dtype=np.float32)
    for row, ids in enumerate(label_lists):
        out[row, list(ids)] = 1.0
    return out


def classification_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    task: str,
    labels: list[str],
    thresholds: np.ndarray | None = None,
    fallback: bool = True,
) -> dict:
    """Headline metrics plus a per-class report.

    `y_true` holds class ids (single-label) or a multi-hot matrix (multi-label);
    `thresholds` are the multi-label decision thresholds (0.5 when not given). Multi-label
    answers are the ones predict gives (`sentitune.decision.multilabel_answers`: with
    `fallback`, a row where no label passes answers its top label), and ``cardinality``
    compares their labels per row with the truth (`sentitune.decision.cardinality`).
    """
    eps = 1e-12
    ids = list(range(len(labels)))
    if task == "multilabel":
        cut = np.full(len(labels), 0.5) if thresholds is None else np.asarray(thresholds)
        y_pred = multilabel_answers(probs, cut, fallback)
        y = y_true.astype(int)
        clipped = np.clip(probs, eps, 1 - eps)
        exact_match = float(skm.accuracy_score(y, y_pred))
        f1_macro = float(skm.f1_score(y, y_pred, average="macro", zero_division=0))
        out = {
            "accuracy": exact_match,
            "exact_match": exact_match,
            "f1": f1_macro,
            "f1_macro": f1_macro,
            "f1_micro": float(skm.f1_score(y, y_pred, average="micro", zero_division=0)),
            "f1_samples": float(skm.f1_score(y, y_pred, average="samples", zero_division=0)),
            "precision": float(skm.precision_score(y, y_pred, average="macro", zero_division=0)),
            "recall": float(skm.recall_score(y, y_pred, average="macro", zero_division=0)),
            "hamming_loss": float(skm.hamming_loss(y, y_pred)),
            "label_cardinality_true": float(y.sum(axis=1).mean()),
            "label_cardinality_pred": float(y_pred.sum(axis=1).mean()),
            "cardinality": cardinality(y, y_pred, fallback_rows=(probs >= cut).sum(axis=1) == 0
                                       if fallback else None),
            "loss": float(-(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)).mean()),
        }
    else:
        y_pred = probs.argmax(axis=1)
        y = np.asarray(y_true, dtype=int)
        average = "binary" if task == "binary" else "macro"
        f1_macro = float(skm.f1_score(y, y_pred, average="macro", zero_division=0))
        out = {
            "accuracy": float(skm.accuracy_score(y, y_pred)),
            "f1": (float(skm.f1_score(y, y_pred, average="binary", zero_division=0))
                   if task == "binary" else f1_macro),
            "precision": float(skm.precision_score(y, y_pred, average=average, zero_division=0)),
            "recall": float(skm.recall_score(y, y_pred, average=average, zero_division=0)),
            "f1_macro": f1_macro,
            "f1_weighted": float(skm.f1_score(y, y_pred, average="weighted", zero_division=0)),
            "loss": float(skm.log_loss(y, np.clip(probs, eps, 1), labels=ids)),
            "confusion_matrix": skm.confusion_matrix(y, y_pred, labels=ids).tolist(),
        }
    report = skm.classification_report(
        y, y_pred, labels=None if task == "multilabel" else ids, target_names=labels,
        output_dict=True, zero_division=0,
    )
    out["per_class"] = {
        name: {k: float(v) for k, v in report[name].items()} for name in labels if name in report
    }
    out["n"] = int(len(y))
    return out


# A model whose validation answers are this much one class, or whose score is within this of
# the best answer that ignores the text, has not learned: a wrong learning rate, mostly.
ONE_CLASS_SHARE = 0.95
CHANCE_MARGIN = 0.02


def learning_problem(validation: dict, task: str, labels: list[str]) -> str | None:
    """Why `validation` (classification_metrics) shows a model that learned nothing from the
    texts, as "the model ..."; None when it did learn. One rule for `train`'s warning and
    `compare`'s verdicts."""
    if task == "multilabel":
        # Answering every label for every text scores F1 2p/(1+p) on a label of prevalence
        # p: a macro-F1 no better than that carries nothing learned from the texts.
        prevalence = np.array([validation["per_class"][name]["support"] for name in labels
                               ]) / validation["n"]
        constant = float(np.mean(2 * prevalence / (1 + prevalence)))
        if validation["f1_macro"] <= constant + CHANCE_MARGIN:
            return (f"the model is at chance: validation macro-F1 "
                    f"{validation['f1_macro']:.3f} vs {constant:.3f} for answering every label")
        return None
    matrix = np.asarray(validation["confusion_matrix"])
    predicted, true = matrix.sum(axis=0) / matrix.sum(), matrix.sum(axis=1) / matrix.sum()
    top = int(predicted.argmax())
    if predicted[top] >= ONE_CLASS_SHARE:
        return f"the model predicts '{labels[top]}' for {predicted[top]:.0%} of validation rows"
    if validation["accuracy"] <= true.max() + CHANCE_MARGIN:
        return (f"the model is at chance: validation accuracy {validation['accuracy']:.3f} vs "
                f"{true.max():.3f} for always answering '{labels[int(true.argmax())]}'")
    return None


def agreement(
    reference_probs: np.ndarray, candidate_probs: np.ndarray, *, multi_label: bool = False
) -> dict[str, Any]:
    """How closely `candidate_probs` (int8 ONNX, bf16) follows `reference_probs` (torch).

    `label_agreement` is the share of rows whose predicted label is the same: the argmax for
    single-label tasks; for multi-label ones the whole set of labels at probability >= 0.5
    must match, since a row with one label more or less is a different prediction.
    """
    reference = np.asarray(reference_probs, dtype=np.float64)
    candidate = np.asarray(candidate_probs, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise ValueError(
            f"need two (n, num_labels) arrays, got {reference.shape} and {candidate.shape}"
        )
    if multi_label:
        same = ((reference >= 0.5) == (candidate >= 0.5)).all(axis=1)
    else:
        same = reference.argmax(axis=1) == candidate.argmax(axis=1)
    n = len(reference)
    return {
        "label_agreement": float(same.mean()) if n else 1.0,
        "max_prob_diff": float(np.abs(reference - candidate).max()) if n else 0.0,
        "n": n,
    }
