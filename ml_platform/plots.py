"""PNG evidence for the MLflow UI: why the registered run won.

Uses matplotlib's Agg backend through the object API (no pyplot global state), so it works
headless and inside servers or notebooks without touching their backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def confusion_counts(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class."""
    counts = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(counts, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return counts


def confusion_matrix_png(
    y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str], path: Path
) -> Path:
    counts = confusion_counts(y_true, y_pred, len(classes))
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(counts, cmap="Blues")
    ticks = range(len(classes))
    ax.set_xticks(ticks, labels=classes, rotation=30, ha="right")
    ax.set_yticks(ticks, labels=classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (test, n={int(counts.sum())})")
    threshold = counts.max() / 2 if counts.size else 0
    for (i, j), value in np.ndenumerate(counts):
        ax.text(
            j,
            i,
            str(value),
            ha="center",
            va="center",
            color="white" if value > threshold else "black",
        )
    fig.savefig(path, dpi=100)
    return Path(path)


def feature_importance_png(model, features: Sequence[str], path: Path) -> Path:
    """Gain importance per feature (features the trees never used show as zero)."""
    scores = model.get_booster().get_score(importance_type="gain")
    values = np.array([scores.get(name, 0.0) for name in features], dtype=float)
    order = np.argsort(values)
    fig = Figure(figsize=(5, 0.5 + 0.5 * len(features)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh([features[i] for i in order], values[order], color="tab:green")
    ax.set_xlabel("total gain")
    ax.set_title("Feature importance")
    fig.savefig(path, dpi=100)
    return Path(path)
