"""Figures a person looks at: learning curves, confusion matrix, text lengths."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sentitune import files  # noqa: E402


def save_figure(fig, path: str | Path) -> Path:
    """Write `fig` as a PNG atomically and free it: every figure of the project goes here."""
    path = Path(path)
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_curves(history: list[dict], path: Path, title: str = "Learning curves") -> Path:
    """Loss (train and validation) and validation accuracy/F1 per epoch."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            ax_loss.plot(epochs, values, marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.legend()
    for key in ("val_accuracy", "val_f1"):
        ax_acc.plot(epochs, [row.get(key) for row in history], marker="o", label=key[4:])
    ax_acc.set(xlabel="epoch", ylabel="score", title="Validation")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_confusion(matrix: list[list[int]], labels: list[str], path: Path) -> Path:
    data = np.asarray(matrix)
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(data, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted",
           ylabel="true", title="Confusion matrix")
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    high = data.max() / 2 if data.size else 0
    for (i, j), value in np.ndenumerate(data):
        ax.text(j, i, str(value), ha="center", va="center",
                color="white" if value > high else "black")
    return save_figure(fig, path)


def plot_lengths(lengths: dict[str, list[int]], max_length: int, path: Path) -> Path:
    """Token-length histogram per split, with the truncation limit marked. Each split is drawn
    as shares of its own rows: in counts a small validation split would be invisible beside
    the training split."""
    fig, ax = plt.subplots(figsize=(7, 4))
    top = max(max(v) for v in lengths.values() if v)
    bins = np.linspace(0, top, 50)
    for split, values in lengths.items():
        if values:
            ax.hist(values, bins=bins, alpha=0.5, weights=np.full(len(values), 1 / len(values)),
                    label=f"{split} ({len(values):,})")
    ax.axvline(max_length, color="red", linestyle="--", label=f"max_length={max_length}")
    ax.set(xlabel="tokens", ylabel="share of the split's texts", title="Token lengths")
    ax.legend()
    return save_figure(fig, path)
