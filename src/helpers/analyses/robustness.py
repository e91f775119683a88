"""Notebook 06: the final model with every evaluation image recompressed, downscaled, blurred or
cropped at growing strength; F1 of both tasks and Task-A accuracy per generator at each level."""
from __future__ import annotations

from functools import partial

import pandas as pd

from helpers.analyses import common
from helpers.analyses.conclusions import robustness_conclusion
from helpers.study.results import Result, with_figures

TITLE = "Robustness to everyday edits"


def _at_level(transform, level, image):
    return transform(image, level)


def curves(context: common.Context) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(F1-A and weighted F1-B per perturbation and level, Task-A accuracy per class and level)."""
    from helpers.evaluation import perturbations

    overall, per_class = [], []
    split = context.splits[context.split_name]
    # An unchanged image is the cached one: scored once from the cache, with nothing to decode.
    unchanged = common.evaluate(context.model, context.viewed, context.cfg, "unperturbed")
    for name, transform in perturbations.PERTURBATIONS.items():
        for level in perturbations.LEVELS[name]:
            values, preds = unchanged if perturbations.UNCHANGED.get(name) == level else common.evaluate_view(
                context.model, split, context.viewed, partial(_at_level, transform, level), context.size,
                context.cfg, f"{name} {level}")
            overall.append({"perturbation": name, "level": level, "f1_a": values["f1_a"],
                            "f1_b_weighted": values["f1_b_weighted"]})
            per_class += [{"perturbation": name, "level": level, "class": c, "task_a_accuracy": v}
                          for c, v in common.task_a_accuracy_per_class(context.viewed, preds).items()]
    return pd.DataFrame(overall), pd.DataFrame(per_class)


def run(namespace: dict) -> Result:
    from helpers.evaluation import perturbations
    from helpers.study import plots

    context = common.prepare(namespace, "robustness")
    if not context.enabled:
        return common.switched_off(context, TITLE)
    overall, per_class = curves(context)
    table = overall.pivot_table(index=["perturbation", "level"], values=["f1_a", "f1_b_weighted"], sort=False)
    result = Result(TITLE, {"F1 per perturbation and level": table.round(3)}, conclusion=robustness_conclusion(overall),
                    numbers={"curves": overall.to_dict(orient="records")})
    with_figures(result, context.figures, {
        f"robustness_{name}": plots.robustness_curves(per_class[per_class.perturbation == name],
                                                      overall[overall.perturbation == name], name)
        for name in perturbations.PERTURBATIONS})
    return common.record(context, "robustness", result)
