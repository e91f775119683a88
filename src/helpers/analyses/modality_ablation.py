"""Notebook 07: text only, image only, both towers concatenated (the paper) and both with attention
fusion, each trained with the analyses' budget on the same data and seed, scored on the evaluation
split."""
from __future__ import annotations

import pandas as pd

from helpers.analyses import common
from helpers.analyses.conclusions import ablation_conclusion
from helpers.study.results import Result

TITLE = "Modality ablation"
# (row, modality, fusion)
MODELS = (("text", "text", "concat"), ("image", "image", "concat"), ("both", "both", "concat"),
          ("both, attention fusion", "both", "attention"))


def run(namespace: dict) -> Result:
    context = common.prepare(namespace, "ablation", ("train", "validation"))
    if not context.enabled:
        return common.switched_off(context, TITLE)
    scores = {}
    for row, modality, fusion in MODELS:
        trained = common.train_quick(context.cfg, context.caches["train"], context.caches["validation"],
                                     modality=modality, fusion=fusion)
        scores[row], _ = common.evaluate(trained, context.evaluated, context.cfg, row)
    table = pd.DataFrame(scores).T
    result = Result(TITLE, {f"Scores on the {context.split_name} split (%)": (100 * table).round(2)},
                    conclusion=ablation_conclusion(table), numbers=table.to_dict(orient="index"))
    return common.record(context, "ablation", result)
