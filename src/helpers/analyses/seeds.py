"""Notebook 10's step: the study's recipe from one seed, as the stages run it (the 'before'
model, its pseudo-label round, the 'after' model, each with the full training budget), scored on
the evaluation split; and what the seeds' spread says about the pseudo-label round's effect."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from helpers.analyses import common
from helpers.study import pseudo_round
from helpers.training.pseudo_labels import augment

HEADLINE = ("f1_a", "f1_b_weighted")


def seed_rows(context: common.Context, seed: int, pool=None) -> list[dict]:
    """The test scores of the recipe run from `seed`: the 'before' model and, when there is a pool
    (pseudo_round.pseudo_pool's, the same for every seed), the 'after' one. The profile's own seed
    is the study's stages, loaded, not retrained."""
    cfg = dataclasses.replace(context.cfg, seed=seed)
    full = {"epochs": cfg.epochs}
    train, val = context.caches["train"], context.caches["validation"]
    before = common.train_quick(cfg, train, val, **full)
    rows = [{"seed": seed, "model": "before", **common.evaluate(before, context.evaluated, cfg, f"seed {seed}")[0]}]
    if pool is not None:
        selection, _ = pseudo_round.select_pool(cfg, context.splits, pool, before)
        train_plus, val_plus, _ = augment(train, val, pool, selection)
        after = common.train_quick(cfg, train_plus, val_plus, "after", **full)
        rows.append(
            {"seed": seed, "model": "after", **common.evaluate(after, context.evaluated, cfg, f"seed {seed}, after")[0]}
        )
    return rows


def spread(rows: pd.DataFrame, scale: float = 100.0) -> pd.DataFrame:
    """Per model and headline metric, in points (fractions times `scale`): mean, standard deviation
    over the seeds, and the 95 % interval of the mean (Student's t: with three seeds it is wide)."""
    from scipy import stats

    found = {}
    for model, group in rows.groupby("model", sort=False):
        for metric in HEADLINE:
            values = scale * group[metric].to_numpy(float)
            std = values.std(ddof=1) if len(values) > 1 else np.nan
            half = stats.t.ppf(0.975, len(values) - 1) * std / np.sqrt(len(values)) if len(values) > 1 else np.nan
            found[(model, metric)] = {
                "mean": values.mean(),
                "std": std,
                "ci95_low": values.mean() - half,
                "ci95_high": values.mean() + half,
                "seeds": len(values),
            }
    return pd.DataFrame(found).T


def pseudo_label_effect(rows: pd.DataFrame) -> pd.DataFrame:
    """After minus before, seed by seed (the same seed's two models), in points: mean, standard
    deviation and 95 % interval of the mean difference; empty without an 'after' model."""
    wide = rows.pivot(index="seed", columns="model", values=list(HEADLINE))
    if "after" not in rows["model"].values:
        return pd.DataFrame()
    paired = pd.DataFrame({m: 100 * (wide[(m, "after")] - wide[(m, "before")]) for m in HEADLINE})
    return spread(paired.assign(model="after - before").reset_index(), scale=1.0)
