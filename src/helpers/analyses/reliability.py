"""Notebook 09: does P(AI) mean what it says? Reliability and expected calibration error of head A
before and after temperature scaling (fitted on validation), and the F1-maximising threshold."""
from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.analyses import common
from helpers.analyses.conclusions import calibration_conclusion
from helpers.study.results import Result, with_figures

TITLE = "Calibration of head A"


def threshold_sentence(costs: pd.DataFrame) -> str:
    if "fpr5" not in costs.index:
        return " This model stores no operating thresholds."
    row, recalls = costs.loc["fpr5"], costs.loc["fpr5"].filter(like="recall ")
    worst = recalls.idxmin().removeprefix("recall ")
    return (f" At the threshold that called 5 % of validation's real photos AI (fpr5 = {row['threshold']:.3g}), "
            f"{100 * row['real_called_ai']:.1f}% of the real photos here are called AI and the least caught generator, "
            f"{worst}, keeps {100 * recalls.min():.1f}% recall.")


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


def threshold_costs(prob_ai: np.ndarray, cached, thresholds: dict) -> pd.DataFrame:
    """Per stored threshold: its value, the share of real images called AI and each generator's
    recall on the scored split."""
    from helpers.evaluation.metrics import called_ai_rates

    return pd.DataFrame({name: {"threshold": value, **called_ai_rates(cached.label_a, cached.label_b, prob_ai >= value)}
                         for name, value in thresholds.items()}).T


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
    from helpers.evaluation.thresholds import NAMED

    stored = {k: v for k, v in (getattr(context.model.config, "operating_thresholds", None) or {}).items() if k in NAMED}
    costs = threshold_costs(eval_preds.prob_ai, evaluated, stored)
    result = Result(TITLE, {"Calibration": pd.Series(numbers).round(4).to_frame("value"),
                            f"Operating thresholds (set on validation) on the {context.split_name} split": costs.round(4)},
                    conclusion=calibration_conclusion(numbers) + threshold_sentence(costs),
                    numbers={**numbers, "thresholds": costs.to_dict(orient="index")})
    figures = {"reliability": plots.reliability_diagram(
        calibration.reliability(eval_preds.prob_ai, evaluated.label_a), calibration.reliability(scaled, evaluated.label_a),
        numbers["ece_before"], numbers["ece_after"])}
    if stored:
        figures["thresholds"] = plots.threshold_histogram(eval_preds.prob_ai, evaluated.label_a, stored)
    with_figures(result, context.figures, figures)
    return common.record(context, "calibration", result)
