"""Notebook 12's steps: the paper's dual encoder beside the baselines people compare against, on the same
splits, seed and outside sets, with the profile's vision tower: image-only fine-tuning with both
heads (Moskowitz et al., 2024), frozen features + logistic regression (UnivFD, Ojha et al., 2023),
frozen features + a linear SVM on a few real/AI pairs (Cozzolino et al., 2024)."""

from __future__ import annotations

import numpy as np

from helpers.data.images import decode_many
from helpers.evaluation import outside
from helpers.evaluation.metadata_baseline import neutralise
from helpers.evaluation.metrics import called_ai_rates, task_a_metrics, task_b_metrics
from helpers.evaluation.probes import vision_features

PAIRS = 1000
METHODS = (
    "dual encoder (paper)",
    "image-only fine-tuning",
    "frozen features + logistic regression",
    "frozen features + linear SVM, few pairs",
)


def scores(label_a, label_b, pred_a, pred_b=None) -> dict:
    """Task A, real images called AI, recall per generator, and Task B where there is a head B."""
    row = {**task_a_metrics(label_a, pred_a), **called_ai_rates(label_a, label_b, pred_a)}
    if pred_b is not None:
        row["f1_b_weighted"] = task_b_metrics(label_b, pred_b)["f1_b_weighted"]
    return row


def _outside_pixels(inputs, size: int, transform) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 pixels of the labelled, readable rows of an outside set, their Task-A labels)."""
    decoded = decode_many(inputs.chunk(0, len(inputs)), size, transform)
    keep = [i for i, (array, _, _) in enumerate(decoded) if array is not None and inputs.label_a[i] >= 0]
    return np.stack([decoded[i][0] for i in keep]), inputs.label_a[keep]


def outside_f1(sets: dict, tokenizer, size: int, batch_size: int, models: dict, probes: dict, tower) -> dict:
    """F1-A of each method on each outside set (`sets`, by name: evaluation.outside.outside_sets), as
    the files are and on the neutral view; images at `size` px."""
    found = {method: {} for method in METHODS}
    for name, inputs in sets.items():
        for method, model in models.items():
            for view, values in outside.score_views(model, tokenizer, inputs, batch_size, name).items():
                found[method][f"{name}, {view}"] = values.get("f1_a", float("nan"))
        for view, transform in (("as the files are", None), ("neutral view", neutralise(size))):
            pixels, label_a = _outside_pixels(inputs, size, transform)
            features = vision_features(tower, pixels, batch_size)
            for method, probe in probes.items():
                found[method][f"{name}, {view}"] = task_a_metrics(label_a, probe.predict(features))["f1_a"]
    return found
