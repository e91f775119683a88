"""Notebook 05: how far file metadata alone goes (a classifier on size, aspect, format, file size,
JPEG quality), beside the model as the files are and on a view without size and format cues."""
from __future__ import annotations

import pandas as pd

from helpers.analyses import common
from helpers.analyses.conclusions import audit_conclusion
from helpers.study.results import Result

TITLE = "Shortcut audit"


def run(namespace: dict) -> Result:
    from helpers.evaluation import metadata_baseline
    from helpers.study.exploration import image_metadata

    context = common.prepare(namespace, "audit")
    if not context.enabled:
        return common.switched_off(context, TITLE)
    cfg, split = context.cfg, context.splits[context.split_name]
    eval_meta = image_metadata(split).iloc[context.viewed.rows].reset_index(drop=True)
    meta_scores = metadata_baseline.metadata_baseline(image_metadata(context.splits["train"]), eval_meta, cfg.seed)
    # The model as the files are and on the neutral view, on the same rows (view_captions).
    model_scores, _ = common.evaluate(context.model, context.viewed, cfg, "model")
    neutral_scores, _ = common.evaluate_view(context.model, split, context.viewed,
                                             metadata_baseline.neutralise(context.size), context.size, cfg, "neutralised")
    table = pd.DataFrame({"metadata only": meta_scores, "model": model_scores, "model, neutralised view": neutral_scores})
    result = Result(TITLE, {f"Scores on the {context.split_name} split (%)": (100 * table).round(2)},
                    conclusion=audit_conclusion(meta_scores, model_scores, neutral_scores, context.split_name),
                    numbers=table.to_dict())
    return common.record(context, "audit", result)
