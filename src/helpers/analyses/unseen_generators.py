"""Notebook 08's step: leave one generator out of training and validation, train with the
analyses' budget, and measure how many of that generator's images are still called AI."""

from __future__ import annotations

import numpy as np

from helpers.analyses import common
from helpers.labels import AI_CLASSES, CLASS_NAMES


def held_out_recall(context: common.Context, generator: int) -> dict[str, float]:
    """Task-A recall on the held-out generator and on the others, and real photos called real, for
    a model trained without the generator."""
    caches, cfg = context.caches, context.cfg
    trained = common.train_quick(
        cfg,
        common.without_generator(caches["train"], generator),
        common.without_generator(caches["validation"], generator),
    )
    _, preds = common.evaluate(trained, context.evaluated, cfg, f"without {CLASS_NAMES[generator]}")
    recall = common.task_a_accuracy_per_class(context.evaluated, preds)
    seen = [recall[CLASS_NAMES[g]] for g in AI_CLASSES if g != generator]
    return {
        "recall_held_out": recall[CLASS_NAMES[generator]],
        "recall_seen": float(np.mean(seen)),
        "real_specificity": recall["real"],
    }
