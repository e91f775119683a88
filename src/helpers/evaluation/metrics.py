"""Task A and Task B metrics, confusion matrices, and the prediction files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.inference.cached import decode
from helpers.labels import CLASS_NAMES, NUM_CLASSES


def confusion(y_true, y_pred, n_classes: int = NUM_CLASSES) -> np.ndarray:
    """Counts; rows are true classes, columns predicted (every class, present or not)."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(np.asarray(y_true, int), np.asarray(y_pred, int), labels=np.arange(n_classes))


def task_a_metrics(y_true, y_pred) -> dict[str, float]:
    """Accuracy; precision, recall and F1 of the AI class; F1 weighted over both classes' support
    (scikit-learn, 0 where undefined)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    if not len(y_true):
        return dict.fromkeys(("acc_a", "precision_a", "recall_a", "f1_a", "f1_a_weighted"), 0.0)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="binary", pos_label=1, labels=[0, 1], zero_division=0
    )
    return {
        "acc_a": float(accuracy_score(y_true, y_pred)),
        "precision_a": float(precision),
        "recall_a": float(recall),
        "f1_a": float(f1),
        "f1_a_weighted": float(f1_score(y_true, y_pred, labels=[0, 1], average="weighted", zero_division=0)),
    }


def task_b_metrics(y_true, y_pred) -> dict[str, float]:
    """Accuracy; precision, recall and F1 weighted by the true classes' support; macro F1 over the
    classes present in the truth or the predictions (scikit-learn's macro average)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    if not len(y_true):
        return dict.fromkeys(("acc_b", "precision_b_weighted", "recall_b_weighted", "f1_b_weighted", "f1_b_macro"), 0.0)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="weighted", zero_division=0)
    return {
        "acc_b": float(accuracy_score(y_true, y_pred)),
        "precision_b_weighted": float(precision),
        "recall_b_weighted": float(recall),
        "f1_b_weighted": float(f1),
        "f1_b_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def _f1(weights: np.ndarray, groups: np.ndarray, truth: np.ndarray, pred: np.ndarray, cls: int):
    """(F1 of class cls, its true support) under each row of weights [B, G] over the rows' groups:
    2tp / (2tp + fp + fn), 0 where that is 0/0 (scikit-learn's zero_division=0)."""

    def weighted(rows: np.ndarray) -> np.ndarray:
        return weights @ np.bincount(groups, weights=rows, minlength=weights.shape[1])

    tp = weighted((truth == cls) & (pred == cls))
    fp = weighted((truth != cls) & (pred == cls))
    fn = weighted((truth == cls) & (pred != cls))
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1e-300), 0.0), tp + fn


def resampled_headline(weights, label_a, label_b, pred_a, pred_b, groups=None) -> dict[str, np.ndarray]:
    """F1-A and weighted F1-B (as task_a_metrics and task_b_metrics compute them) under each row of
    weights, a row counted as often as its weight says: B resamples of a split scored at once,
    where scikit-learn would take one call per resample (a bootstrap asks for thousands). weights:
    [B, N] a weight per row, or with groups (each row's group, 0..G-1) [B, G] a weight per group,
    which keeps a bootstrap over a paper-size split's captions at B x G numbers, not B x N."""
    weights = np.asarray(weights, np.float64)
    label_b, pred_b = np.asarray(label_b), np.asarray(pred_b)
    groups = np.arange(len(label_b)) if groups is None else np.asarray(groups)
    f1_a, _ = _f1(weights, groups, np.asarray(label_a), np.asarray(pred_a), 1)
    per_class = [_f1(weights, groups, label_b, pred_b, cls) for cls in np.union1d(label_b, pred_b)]
    support = sum(count for _, count in per_class)
    weighted = sum(f1 * count for f1, count in per_class) / np.maximum(support, 1e-300)
    return {"f1_a": f1_a, "f1_b_weighted": np.where(support > 0, weighted, 0.0)}


def all_metrics(label_a, label_b, pred_a, pred_b) -> dict[str, float]:
    return {**task_a_metrics(label_a, pred_a), **task_b_metrics(label_b, pred_b)}


def metrics_both_ways(label_a, label_b, pred_a, pred_b, scores_b) -> dict[str, float]:
    """all_metrics with Task B as decoded, plus Task B as the plain argmax of scores_b (logits or
    probabilities over the six classes; suffix _argmax): how the authors' validation scores it."""
    plain = task_b_metrics(label_b, np.asarray(scores_b).argmax(1))
    return {**all_metrics(label_a, label_b, pred_a, pred_b), **{f"{k}_argmax": v for k, v in plain.items()}}


def called_ai_rates(label_a, label_b, pred_a) -> dict[str, float]:
    """The share of real images called AI and, for each generator present, the share of its
    images called AI (Task-A recall per generator)."""
    label_a, label_b, pred_a = np.asarray(label_a), np.asarray(label_b), np.asarray(pred_a)
    rates = {"real_called_ai": float(pred_a[label_a == 0].mean())}
    rates.update(
        {f"recall {CLASS_NAMES[g]}": float(pred_a[label_b == g].mean()) for g in sorted(set(label_b.tolist()) - {0})}
    )
    return rates


def per_generator_accuracy(label_b, pred_a, pred_b) -> pd.DataFrame:
    """For each true class: rows, share predicted exactly (Task B) and share with Task A right
    (read from the Task A answer itself: under six_class decoding A = 1 with B = real can happen)."""
    label_b, pred_a, pred_b = np.asarray(label_b), np.asarray(pred_a), np.asarray(pred_b)
    rows = []
    for cls, name in enumerate(CLASS_NAMES):
        mask = label_b == cls
        if mask.any():
            rows.append(
                {
                    "class": name,
                    "rows": int(mask.sum()),
                    "task_b_accuracy": float((pred_b[mask] == cls).mean()),
                    "task_a_accuracy": float((pred_a[mask] == int(cls != 0)).mean()),
                }
            )
    return pd.DataFrame(rows)


def predictions_frame(
    probs_a: np.ndarray, probs_b: np.ndarray, pred_a, pred_b, extra: dict | None = None
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "index": np.arange(len(pred_a)),
            "p_ai": probs_a,
            "Label_A": pred_a,
            "Label_B": pred_b,
            "generator": [CLASS_NAMES[b] for b in pred_b],
        }
    )
    for cls, name in enumerate(CLASS_NAMES):
        frame[f"p_{name}"] = probs_b[:, cls]
    for key, values in (extra or {}).items():
        frame[key] = values
    return frame


def write_competition_json(path: str | Path, pred_a, pred_b, index=None) -> Path:
    """The CT2 submission format: a list of {index, Label_A, Label_B}."""
    index = np.arange(len(pred_a)) if index is None else index
    records = [{"index": int(i), "Label_A": int(a), "Label_B": int(b)} for i, a, b in zip(index, pred_a, pred_b)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1))
    return path


def metrics_from_logits(logits_a, logits_b, label_a, label_b, mode: str = "hierarchical") -> dict[str, float]:
    """Both tasks with Task B decoded as the profile says, plus Task B as the plain argmax over
    the six logits (suffix _argmax): what the authors' compute_metrics reports on validation."""
    prob_ai = 1.0 / (1.0 + np.exp(-np.asarray(logits_a, np.float64)))
    logits_b = np.asarray(logits_b, np.float64)
    probs_b = np.exp(logits_b - logits_b.max(1, keepdims=True))
    decoded = decode(prob_ai, probs_b / probs_b.sum(1, keepdims=True), mode=mode)
    return metrics_both_ways(label_a, label_b, decoded.label_a, decoded.label_b, logits_b)


def compute_metrics_for(mode: str):
    """The Trainer's compute_metrics: its EvalPrediction's logits and labels, decoded with `mode`."""

    def compute_metrics(prediction) -> dict[str, float]:
        (logits_a, logits_b), (label_a, label_b) = prediction.predictions, prediction.label_ids
        return metrics_from_logits(logits_a, logits_b, label_a, label_b, mode)

    return compute_metrics
