"""Notebook 08's step: how many of a held-out generator's images a model trained without it
(variants.unseen, with the analyses' budget) still calls AI, beside the generators it saw."""

from __future__ import annotations

import numpy as np

from helpers.analyses import common
from helpers.cache.dataset import CachedSplit
from helpers.labels import AI_CLASSES, CLASS_NAMES


def held_out_recall(evaluated: CachedSplit, batch_size: int, generator: int, model) -> dict[str, float]:
    """Task-A recall on the held-out generator and on the others, and real photos called real, for
    `model`, trained without the generator."""
    _, preds = common.evaluate(model, evaluated, batch_size, f"without {CLASS_NAMES[generator]}")
    recall = common.task_a_accuracy_per_class(evaluated, preds)
    seen = [recall[CLASS_NAMES[g]] for g in AI_CLASSES if g != generator]
    return {
        "recall_held_out": recall[CLASS_NAMES[generator]],
        "recall_seen": float(np.mean(seen)),
        "real_specificity": recall["real"],
    }
