"""Notebook 08: leave one generator out of training and validation, train with the analyses'
budget, and measure how many of that generator's images are still called AI."""
from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.analyses import common
from helpers.analyses.conclusions import unseen_conclusion
from helpers.labels import AI_CLASSES, CLASS_NAMES
from helpers.study.results import Result, with_figures

TITLE = "Unseen generators"


def held_out_recall(context: common.Context, generator: int) -> dict[str, float]:
    """Task-A recall on the held-out generator and on the others, and real photos called real, for
    a model trained without the generator."""
    caches = context.caches
    trained = common.train_quick(context.cfg, common.without_generator(caches["train"], generator),
                                 common.without_generator(caches["validation"], generator))
    _, preds = common.evaluate(trained, context.evaluated, context.cfg, f"without {CLASS_NAMES[generator]}")
    recall = common.task_a_accuracy_per_class(context.evaluated, preds)
    seen = [recall[CLASS_NAMES[g]] for g in AI_CLASSES if g != generator]
    return {"recall_held_out": recall[CLASS_NAMES[generator]], "recall_seen": float(np.mean(seen)),
            "real_specificity": recall["real"]}


def run(namespace: dict) -> Result:
    from helpers.study import plots

    context = common.prepare(namespace, "unseen", ("train", "validation"))
    if not context.enabled:
        return common.switched_off(context, TITLE)
    table = pd.DataFrame({CLASS_NAMES[g]: held_out_recall(context, g) for g in AI_CLASSES}).T
    result = Result(TITLE, {"Task-A recall, generator held out of training": table.round(3)},
                    conclusion=unseen_conclusion(table), numbers=table.to_dict(orient="index"))
    with_figures(result, context.figures, {"unseen_generators": plots.unseen_bars(table)})
    return common.record(context, "unseen", result)
