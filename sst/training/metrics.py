"""What a run's test predictions score: the confusion matrix, accuracy, macro-F1, Cohen's kappa and per-class
figures, and the warnings that make a result mean less than its accuracy says.

    cm = confusion_matrix(truth, predicted, n_class)     # rows true, columns predicted
    scores(cm)                                           # {"accuracy", "macro_f1", "kappa", "per_class"}
"""
from __future__ import annotations

import numpy as np

from sst.config import Config
from sst.data import datasets

# ----------------------------------------------------------------------------- metrics


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_class: int) -> np.ndarray:
    """(n_class, n_class) counts; rows = true class, columns = predicted class."""
    return np.bincount(y_true * n_class + y_pred, minlength=n_class * n_class).reshape(n_class, n_class)


def scores(cm: np.ndarray) -> dict:
    """Accuracy, macro-F1 (classes absent from both truth and prediction are skipped), Cohen's kappa, and
    per class (lists indexed by class): precision, recall, F1 (0 where undefined) and support."""
    n = cm.sum()
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=present)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    p_observed = tp.sum() / n
    p_chance = float((support * predicted).sum()) / n ** 2
    kappa = (p_observed - p_chance) / (1 - p_chance) if p_chance < 1 else 1.0
    return {"accuracy": float(p_observed), "macro_f1": float(f1[present].mean()), "kappa": float(kappa),
            "per_class": {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
                          "support": support.tolist()}}


def result_warnings(cfg: Config, predicted: np.ndarray, steps: int) -> list[str]:
    """What makes a run's result mean less than its accuracy says: every test window predicted as one
    class (the model collapsed), or fewer than 100 optimizer steps (it hardly trained)."""
    out = []
    if len(np.unique(predicted)) == 1:
        c = int(predicted[0])
        out.append(f"every test window predicted as class {c} ({datasets.get(cfg.data.dataset).class_names[c]}): "
                   f"the model collapsed to one class")
    if steps < 100:
        out.append(f"trained for only {steps} optimizer steps (fewer than 100)")
    return out
