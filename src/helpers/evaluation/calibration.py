"""Calibration of head A: reliability bins, expected calibration error, temperature scaling,
and the decision threshold that maximises F1 on validation."""

from __future__ import annotations

import numpy as np


def reliability(prob_ai: np.ndarray, label_a: np.ndarray, bins: int = 10) -> dict[str, np.ndarray]:
    """Per equal-width bin of P(AI): rows, mean predicted P(AI), observed share of AI. (Written out:
    scikit-learn's calibration_curve drops empty bins and returns no counts, which ECE weighs by.)"""
    prob_ai, label_a = np.asarray(prob_ai, float), np.asarray(label_a, float)
    index = np.minimum((prob_ai * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    mean_p = np.bincount(index, weights=prob_ai, minlength=bins) / np.maximum(count, 1)
    observed = np.bincount(index, weights=label_a, minlength=bins) / np.maximum(count, 1)
    return {"count": count, "confidence": mean_p, "accuracy": observed, "edges": np.linspace(0, 1, bins + 1)}


def ece(prob_ai: np.ndarray, label_a: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (rows in bin / rows) x |mean P(AI) - share AI|."""
    table = reliability(prob_ai, label_a, bins)
    total = table["count"].sum()
    return float(np.sum(table["count"] / max(total, 1) * np.abs(table["confidence"] - table["accuracy"])))


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    return float(np.mean(np.logaddexp(0.0, z) - labels * z))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimising the validation NLL of sigmoid(logit / T) (golden-section
    search on log T, which is unimodal for this one-parameter family)."""
    logits, labels = np.asarray(logits, float), np.asarray(labels, float)
    low, high = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if _nll(logits, labels, np.exp(a)) < _nll(logits, labels, np.exp(b)):
            high = b
        else:
            low = a
    return float(np.exp((low + high) / 2))


def logit(prob: np.ndarray) -> np.ndarray:
    prob = np.clip(np.asarray(prob, float), 1e-7, 1 - 1e-7)
    return np.log(prob) - np.log1p(-prob)


def best_threshold(prob_ai: np.ndarray, label_a: np.ndarray) -> tuple[float, float]:
    """(threshold, F1 of the AI class) maximising F1 with 'AI' meaning P(AI) >= threshold; (0.5, 0)
    without AI rows. The threshold lies halfway between the lowest score called AI and the highest
    below it: any value in that gap gives the same F1 here, and one at its edge (1.0 when every AI
    image scores 1.0) misses new images that score a hair lower."""
    from sklearn.metrics import precision_recall_curve

    label_a, prob_ai = np.asarray(label_a, int), np.asarray(prob_ai, float)
    if not label_a.any():
        return 0.5, 0.0
    precision, recall, thresholds = precision_recall_curve(label_a, prob_ai)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros_like(precision), where=precision + recall > 0
    )[:-1]
    best = int(np.argmax(f1))
    below = prob_ai[prob_ai < thresholds[best]]
    return float((thresholds[best] + below.max()) / 2 if below.size else thresholds[best]), float(f1[best])
