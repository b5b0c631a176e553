"""Out-of-fold probabilities: every row scored by a model that never saw its label.

Fast mode embeds every text once with the frozen encoder (mean of the last hidden states
over real tokens) and cross-validates a scikit-learn logistic regression on them;
`--finetune` fine-tunes the encoder in each fold with the training code instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from sentitune.auditing.rows import AuditRows
from sentitune.config import AuditConfig


def embed(texts: list[str], model: str, max_length: int, batch_size: int = 64,
          progress: bool = False) -> np.ndarray:
    """Mean-pooled last hidden states of the frozen `model` (n, hidden), float32."""
    import torch

    from sentitune.inference.classifier import length_batches
    from sentitune.model import load_encoder, load_tokenizer, quiet_transformers

    quiet_transformers()
    tokenizer = load_tokenizer(model)
    encoder = load_encoder(model)
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    batches = list(length_batches([len(row) for row in ids], batch_size))
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="embedding", unit="batch")
    with torch.inference_mode():
        for picked in batches:
            padded = tokenizer.pad({"input_ids": [ids[i] for i in picked]}, return_tensors="pt")
            hidden = encoder(**padded).last_hidden_state
            mask = padded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out[picked] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()
    return out


def _splitter(rows: AuditRows, targets: np.ndarray, folds: int, seed: int):
    from sklearn.model_selection import KFold, StratifiedKFold

    if rows.task != "multilabel" and np.bincount(targets).min(initial=folds) >= folds:
        return StratifiedKFold(folds, shuffle=True, random_state=seed).split(targets, targets)
    return KFold(folds, shuffle=True, random_state=seed).split(targets)


def linear_oof(rows: AuditRows, features: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold probabilities (n, labels) of a logistic regression on `features`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    targets = rows.targets()
    probs = np.zeros((len(targets), len(rows.labels)))
    for fit, held in _splitter(rows, targets, folds, seed):
        # Strong L2 (C=0.05): hundreds of features, often few rows per class; cleanlab
        # wants calibrated probabilities more than the tightest fit.
        linear = LogisticRegression(C=0.05, max_iter=2000, random_state=seed)
        if rows.task == "multilabel":
            model = make_pipeline(StandardScaler(), OneVsRestClassifier(linear))
            model.fit(features[fit], targets[fit])
            probs[held] = model.predict_proba(features[held])
            continue
        model = make_pipeline(StandardScaler(), linear).fit(features[fit], targets[fit])
        # A class missing from this fold's training rows gets probability 0 here.
        probs[np.ix_(held, model.classes_)] = model.predict_proba(features[held])
    return probs


def finetuned_oof(rows: AuditRows, settings: AuditConfig, progress: bool = False) -> np.ndarray:
    """Out-of-fold probabilities of the encoder fine-tuned (sentitune.training) per fold."""
    from sentitune.auditing.writing import label_cell
    from sentitune.config import RunConfig
    from sentitune.inference.classifier import Classifier
    from sentitune.training import train

    targets = rows.targets()
    probs = np.zeros((len(targets), len(rows.labels)))
    with tempfile.TemporaryDirectory(prefix="sentitune-audit-") as scratch:
        for k, (fit, held) in enumerate(_splitter(rows, targets, settings.folds,
                                                  settings.seed)):
            data = Path(scratch) / f"fold{k}.csv"
            fold = rows.frame.iloc[fit]
            fold.assign(label=[label_cell(rows.names_of(v)) for v in fold["label"]]).to_csv(
                data, index=False)
            config = RunConfig().replace(
                dataset=str(data), model=rows.model, task=rows.task,
                max_length=settings.max_length, epochs=settings.epochs,
                batch_size=settings.batch_size, seed=settings.seed, checkpoint_every=None)
            run_dir = train(config, Path(scratch) / f"run{k}", progress=progress).run_dir
            classifier = Classifier.from_pretrained(run_dir)
            scored = classifier.predict_proba(list(rows.frame["text"].iloc[held]),
                                              settings.batch_size)
            columns = [rows.labels.index(name) for name in classifier.labels]
            probs[np.ix_(held, columns)] = scored
    return probs
