"""Operating thresholds of head A: where to cut P(AI) so that a chosen share of real photos is
called AI (the way detector users set a threshold on reference real images), or so that F1 is
highest. A row is called AI when P(AI) >= threshold."""

from __future__ import annotations

import numpy as np

from helpers.evaluation.calibration import best_threshold

NAMED = ("0.5", "fpr1", "fpr5", "f1")


def at_false_positive_rate(prob_real: np.ndarray, rate: float) -> float:
    """The lowest threshold that calls at most `rate` of these real images AI. Images with the
    same score are never split (a threshold calls all of them AI or none), so with ties the share
    can fall below `rate`; with no real image the threshold is 0.5."""
    scores = np.sort(np.asarray(prob_real, np.float64))[::-1]
    if not len(scores):
        return 0.5
    allowed = int(np.floor(rate * len(scores) + 1e-9))
    if allowed >= len(scores):
        return float(scores[-1])
    # Just above the highest score that must not be called AI: the `allowed` scores above it are.
    return float(np.nextafter(scores[allowed], np.inf))


def operating_thresholds(prob_ai: np.ndarray, label_a: np.ndarray) -> dict:
    """The named thresholds on a labelled split (validation): 0.5, 1 % and 5 % of its real images
    called AI, and the F1-maximising one; with the real-image count they were set on."""
    prob_ai, label_a = np.asarray(prob_ai, np.float64), np.asarray(label_a, int)
    real = prob_ai[label_a == 0]
    return {
        "0.5": 0.5,
        "fpr1": at_false_positive_rate(real, 0.01),
        "fpr5": at_false_positive_rate(real, 0.05),
        "f1": best_threshold(prob_ai, label_a)[0],
        "set_on_real_images": int(len(real)),
        "set_on_ai_images": int((label_a == 1).sum()),
    }


def resolve(requested: str, stored: dict | None) -> tuple[str, float]:
    """(name, value) of --threshold: a stored name (0.5, fpr1, fpr5, f1) or a number in (0, 1)."""
    if requested in NAMED:
        if requested != "0.5" and not stored:
            raise ValueError(
                f"--threshold {requested}: this model stores no operating thresholds (trained before "
                "they were kept); use a number, or train it again"
            )
        return requested, 0.5 if requested == "0.5" else float(stored[requested])
    try:
        value = float(requested)
    except ValueError:
        raise ValueError(
            f"--threshold {requested!r}: give one of {', '.join(NAMED)} or a number between 0 and 1"
        ) from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"--threshold {value}: a threshold lies strictly between 0 and 1")
    return f"{value:g}", value
