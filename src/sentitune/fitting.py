"""After training: the model judged and its decision fitted on the validation rows.

fp32 logits of every validation row (whatever precision training ran in), how bf16
inference agrees with them, a warning when the model has not learned, and the decision
(temperature or per-label thresholds) that `predict` and `serve` apply.
"""

from __future__ import annotations

import numpy as np

from sentitune import console
from sentitune.config import TrainingConfig
from sentitune.decision import CARDINALITY_FACTOR, Decision, fit_label_thresholds
from sentitune.hardware import BF16_AGREEMENT_ROWS
from sentitune.metrics import agreement, learning_problem, probabilities


def validation_logits(model, dataset, tokenizer, batch_size: int, *,
                      bf16: bool = False) -> np.ndarray:
    """Logits of every row of `dataset`, in its order: in fp32, or under bf16 autocast.

    Not through `Trainer.predict`, which would run in the training's own precision.
    Rows go in length order so each batch pads little.
    """
    import inspect

    import torch
    from transformers import DataCollatorWithPadding

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    accepted = inspect.signature(base.forward).parameters
    inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids")
              if name in dataset.column_names and name in accepted]
    collate = DataCollatorWithPadding(tokenizer)
    device = next(model.parameters()).device
    order = np.argsort(dataset["length"], kind="stable")
    out = np.zeros((len(dataset), model.config.num_labels), dtype=np.float64)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        for start in range(0, len(order), batch_size):
            picked = order[start:start + batch_size]
            rows = dataset.select(picked)
            batch = collate([{name: row[name] for name in inputs} for row in rows])
            logits = model(**{name: t.to(device) for name, t in batch.items()}).logits
            out[picked] = logits.float().cpu().numpy()
    model.train(was_training)
    return out


def bf16_agreement(model, val_set, tokenizer, batch_size: int, fp32_probs: np.ndarray,
                   task: str) -> dict:
    """How often bf16 inference gives the fp32 label (and, single-label, whether its
    probabilities stay as calibrated), on up to BF16_AGREEMENT_ROWS validation rows."""
    from sentitune.calibration import expected_calibration_error

    n = min(len(val_set), BF16_AGREEMENT_ROWS)
    rows = val_set.select(range(n))
    bf16_probs = probabilities(validation_logits(model, rows, tokenizer, batch_size, bf16=True),
                               task)
    report = agreement(fp32_probs[:n], bf16_probs, multi_label=task == "multilabel")
    if task != "multilabel":
        labels = np.asarray(rows["labels"], dtype=int)
        report["ece_fp32"] = expected_calibration_error(fp32_probs[:n], labels)
        report["ece_bf16"] = expected_calibration_error(bf16_probs, labels)
    return report


def _warn_if_not_learned(validation: dict, task: str, labels: list[str],
                         settings: TrainingConfig) -> None:
    problem = learning_problem(validation, task, labels)
    if problem is not None:
        console.warn(f"{problem}; it has not learned at learning rate "
                     f"{settings.learning_rate:g} with {console.option('method', settings.method)}"
                     f": try another {console.option('learning_rate')}, more "
                     f"{console.option('epochs')} or more data")
    elif task == "multilabel":
        true, predicted = validation["label_cardinality_true"], validation[
            "label_cardinality_pred"]
        if not true / CARDINALITY_FACTOR <= predicted <= true * CARDINALITY_FACTOR:
            console.warn(f"validation answers carry {predicted:.2f} labels on average against "
                         f"{true:.2f} in truth: the decision thresholds do not fit this data "
                         f"(more validation rows, {console.option('class_weights', 'auto')} "
                         f"or another {console.option('learning_rate')} may help)")


def fit_decision(model, logits: np.ndarray, y_true: np.ndarray,
                 task: str) -> tuple[Decision, dict]:
    """Fit on validation how probabilities become decisions.

    Single-label: a temperature (Guo et al. 2017) folded into the model's head, so the
    saved model itself gives calibrated probabilities, but only when it lowers the
    validation NLL it was fitted for without raising the ECE (a LoRA run once folded
    T = 6.9 while its ECE rose 0.011 -> 0.018); both are reported either way.
    Multi-label: one decision threshold per label (see `fit_label_thresholds`: per-label
    F1 cuts shifted jointly until answers carry within 2x the true labels per row); the
    second value is then the fit's report (metrics.json's ``threshold_fit``).
    """
    from sentitune.calibration import expected_calibration_error, fit_temperature, nll
    from sentitune.model import scale_logits

    if task == "multilabel":
        fit = fit_label_thresholds(probabilities(logits, task), y_true)
        return (Decision(label_thresholds=[round(float(t), 6) for t in fit.thresholds]),
                fit.report())
    labels = np.asarray(y_true, dtype=int)
    fitted = round(float(fit_temperature(logits, labels)), 6)
    before = {"nll": nll(logits, labels, 1.0),
              "ece": expected_calibration_error(probabilities(logits, task), labels)}
    after = {"nll": nll(logits, labels, fitted),
             "ece": expected_calibration_error(probabilities(logits / fitted, task), labels)}
    applied = (after["nll"] < before["nll"] and after["ece"] <= before["ece"]
               and scale_logits(model, 1.0 / fitted))
    temperature = fitted if applied else 1.0
    calibration = {
        "temperature": temperature,
        "fitted_temperature": fitted,
        "applied": bool(applied),
        "ece": before["ece"],
        "ece_after_temperature": after["ece"] if applied else before["ece"],
        "ece_with_fitted_temperature": after["ece"],
        "nll": before["nll"],
        "nll_with_fitted_temperature": after["nll"],
    }
    return Decision(temperature=temperature), calibration
