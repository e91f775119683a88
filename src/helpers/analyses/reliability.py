"""Notebook 09: does P(AI) mean what it says? Reliability and expected calibration error of head A
before and after temperature scaling (fitted on validation), and the F1-maximising threshold."""
from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.analyses import common
from helpers.analyses.conclusions import calibration_conclusion
from helpers.study.results import Result, with_figures

TITLE = "Calibration of head A"


def calibration_numbers(val_prob, val_label, eval_prob, eval_label) -> tuple[dict, np.ndarray]:
    """(temperature, ECE before/after, best threshold and F1-A there and at 0.5; the scaled P(AI))."""
    from helpers.evaluation import calibration
    from helpers.evaluation.metrics import task_a_metrics

    temperature = calibration.fit_temperature(calibration.logit(val_prob), val_label)
    scaled = 1 / (1 + np.exp(-calibration.logit(eval_prob) / temperature))
    threshold, _ = calibration.best_threshold(val_prob, val_label)
    numbers = {"temperature": temperature, "ece_before": calibration.ece(eval_prob, eval_label),
               "ece_after": calibration.ece(scaled, eval_label), "threshold": threshold,
               "f1_at_best": task_a_metrics(eval_label, (eval_prob >= threshold).astype(int))["f1_a"],
               "f1_at_half": task_a_metrics(eval_label, (eval_prob >= 0.5).astype(int))["f1_a"]}
    return numbers, scaled


def run(namespace: dict) -> Result:
    from helpers.evaluation import calibration
    from helpers.study import plots

    context = common.prepare(namespace, "calibration", ("validation",))
    if not context.enabled:
        return common.switched_off(context, TITLE)
    validation, evaluated = context.caches["validation"], context.evaluated
    _, val_preds = common.evaluate(context.model, validation, context.cfg, "validation")
    _, eval_preds = common.evaluate(context.model, evaluated, context.cfg, context.split_name)
    numbers, scaled = calibration_numbers(val_preds.prob_ai, validation.label_a, eval_preds.prob_ai, evaluated.label_a)
    result = Result(TITLE, {"Calibration": pd.Series(numbers).round(4).to_frame("value")},
                    conclusion=calibration_conclusion(numbers), numbers=numbers)
    with_figures(result, context.figures, {"reliability": plots.reliability_diagram(
        calibration.reliability(eval_preds.prob_ai, evaluated.label_a), calibration.reliability(scaled, evaluated.label_a),
        numbers["ece_before"], numbers["ece_after"])})
    return common.record(context, "calibration", result)
