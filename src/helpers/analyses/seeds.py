"""Notebook 10: the headline metrics over the profile's seeds, each a full training with the
analyses' budget, as mean ± standard deviation: the size of a difference worth reading."""
from __future__ import annotations

import pandas as pd

from helpers.analyses import common
from helpers.analyses.conclusions import seeds_conclusion
from helpers.study.results import Result

TITLE = "Seeds"


def run(namespace: dict) -> Result:
    context = common.prepare(namespace, "seeds", ("train", "validation"))
    if not context.enabled:
        return common.switched_off(context, TITLE)
    per_seed = {}
    for seed in context.cfg.seeds:
        trained = common.train_quick(context.cfg, context.caches["train"], context.caches["validation"], seed=seed)
        per_seed[seed], _ = common.evaluate(trained, context.evaluated, context.cfg, f"seed {seed}")
    table = pd.DataFrame(per_seed).T
    summary = common.mean_std(table)
    result = Result(TITLE, {"Per seed (%)": (100 * table).round(2), "Mean ± std (%)": (100 * summary).round(2)},
                    conclusion=seeds_conclusion(summary, context.cfg.seeds),
                    numbers={"per_seed": table.to_dict(orient="index"), "summary": summary.to_dict(orient="index")})
    return common.record(context, "seeds", result)
