"""Notebook 10's step: the study's recipe from one seed, as the stages run it (the 'before'
model, its pseudo-label round, the 'after' model, each with the full training budget, trained by
the engine: variants.seeds), scored on the evaluation split; and what the seeds' spread says about
the pseudo-label round's effect."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.analyses import common
from helpers.cache.dataset import CachedSplit
from helpers.evaluation.metrics import resampled_headline
from helpers.inference.cached import Predictions

HEADLINE = ("f1_a", "f1_b_weighted")


def seed_rows(
    evaluated: CachedSplit, batch_size: int, seed: int, models: dict
) -> tuple[list[dict], dict[str, Predictions]]:
    """(the scores of the recipe run from `seed` on the `evaluated` split, its answers by model):
    `models` is the seed's {'before': model, 'after': model} (variants.seeds: 'after' when the
    profile has a pool; the profile's own seed's are the study's stages)."""
    rows, answers = [], {}
    for name, model in models.items():
        scores, answers[name] = common.evaluate(model, evaluated, batch_size, f"seed {seed}, {name}")
        rows.append({"seed": seed, "model": name, **scores})
    return rows, answers


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
    deviation and 95 % interval of the mean difference; empty without an 'after' model. The
    interval covers the training seeds' noise on this one data draw and test split, not the test
    split's own sampling error (bootstrap_effect adds that)."""
    if repeated := sorted(set(rows.loc[rows.duplicated(["seed", "model"]), "seed"])):
        raise ValueError(f"seeds {repeated} have more than one row per model: list each seed once (key 'seeds')")
    wide = rows.pivot(index="seed", columns="model", values=list(HEADLINE))
    if "after" not in rows["model"].values:
        return pd.DataFrame()
    paired = pd.DataFrame({m: 100 * (wide[(m, "after")] - wide[(m, "before")]) for m in HEADLINE})
    return spread(paired.assign(model="after - before").reset_index(), scale=1.0)


def bootstrap_effect(
    evaluated, captions, answers: dict, draws: int = 2000, seed: int = 0, scale: float = 100.0
) -> pd.DataFrame:
    """The pseudo-label round's effect (after minus before, averaged over the seeds, in points) with
    a 95 % percentile interval from a paired bootstrap that redraws the seeds and the evaluation
    split's captions together (a caption's images stay together, and each draw scores every model
    on the same rows): it covers the training seeds' noise and the test split's sampling error, not
    another draw of the training data. answers: {seed: {"before": Predictions, "after": ...}}, on
    the rows of `evaluated`, whose captions are `captions`. Empty without 'after' models."""
    if not answers or any("after" not in pair for pair in answers.values()):
        return pd.DataFrame()
    rng = np.random.default_rng(seed)
    groups = np.unique(np.asarray(captions, dtype=object).astype(str), return_inverse=True)[1].reshape(-1)
    n_groups, n_seeds = groups.max() + 1, len(answers)
    group_weights = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=draws)
    seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=draws) / n_seeds
    truth = (evaluated.label_a, evaluated.label_b)
    differences = {metric: np.zeros(draws) for metric in HEADLINE}
    for column, pair in enumerate(answers.values()):
        after, before = (
            resampled_headline(group_weights, *truth, pair[m].label_a, pair[m].label_b, groups)
            for m in ("after", "before")
        )
        for metric in HEADLINE:
            differences[metric] += seed_weights[:, column] * scale * (after[metric] - before[metric])
    return pd.DataFrame(
        {
            ("after - before", metric): {
                "mean": values.mean(),
                "ci95_low": np.percentile(values, 2.5),
                "ci95_high": np.percentile(values, 97.5),
                "draws": draws,
            }
            for metric, values in differences.items()
        }
    ).T
