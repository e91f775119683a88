"""Notebook 06's step: the final model on the evaluation rows with every image perturbed at one
level; F1 of both tasks and Task-A accuracy per true class."""

from __future__ import annotations

from functools import partial

from helpers.analyses import common
from helpers.cache.dataset import CachedSplit
from helpers.evaluation import perturbations


def _at_level(transform, level, image):
    return transform(image, level)


def at_level(model, split, viewed: CachedSplit, size: int, batch_size: int, name: str, level, unchanged: tuple):
    """(F1-A and weighted F1-B, Task-A accuracy per class) of `model` on the `viewed` rows of `split`
    under perturbation `name` at `level`, images at `size` px. `unchanged` is common.evaluate's
    answer on those rows, which an unchanged level reuses: nothing is decoded again for it."""
    values, preds = (
        unchanged
        if perturbations.UNCHANGED.get(name) == level
        else common.evaluate_view(
            model,
            split,
            viewed,
            partial(_at_level, perturbations.PERTURBATIONS[name], level),
            size,
            batch_size,
            f"{name} {level}",
        )
    )
    row = {"perturbation": name, "level": level, "f1_a": values["f1_a"], "f1_b_weighted": values["f1_b_weighted"]}
    per_class = [
        {"perturbation": name, "level": level, "class": c, "task_a_accuracy": v}
        for c, v in common.task_a_accuracy_per_class(viewed, preds).items()
    ]
    return row, per_class
