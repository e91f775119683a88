"""Notebook 09's steps: does P(AI) mean what it says? Expected calibration error of head A before
and after temperature scaling (fitted on validation), the F1-maximising threshold, and what the
stored operating thresholds cost on the evaluation split."""
from __future__ import annotations

import numpy as np
import pandas as pd


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


def stored_thresholds(model) -> dict:
    """The named operating thresholds the model stores (set on validation when it was trained)."""
    from helpers.evaluation.thresholds import NAMED

    return {k: v for k, v in (getattr(model.config, "operating_thresholds", None) or {}).items() if k in NAMED}
