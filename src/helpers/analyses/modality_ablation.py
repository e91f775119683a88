"""Notebook 07: text only, image only and both towers, each trained with the analyses' budget on
the same data and seed, scored on the evaluation split."""
from __future__ import annotations

import pandas as pd

from helpers.analyses import common
from helpers.analyses.conclusions import ablation_conclusion
from helpers.study.results import Result

TITLE = "Modality ablation"
MODALITIES = ("text", "image", "both")


def run(namespace: dict) -> Result:
    context = common.prepare(namespace, "ablation", ("train", "validation"))
    if not context.enabled:
        return common.switched_off(context, TITLE)
    scores = {}
    for modality in MODALITIES:
        trained = common.train_quick(context.cfg, context.caches["train"], context.caches["validation"],
                                     modality=modality)
        scores[modality], _ = common.evaluate(trained, context.evaluated, context.cfg, modality)
    table = pd.DataFrame(scores).T
    result = Result(TITLE, {f"Scores on the {context.split_name} split (%)": (100 * table).round(2)},
                    conclusion=ablation_conclusion(table), numbers=table.to_dict(orient="index"))
    return common.record(context, "ablation", result)
