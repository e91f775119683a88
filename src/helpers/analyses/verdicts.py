"""Notebook 13's verdicts: which variants of the recipe beat the seed noise, and the paragraph that
says so, generated from the numbers."""

from __future__ import annotations

import pandas as pd

# What notebook 13 compares its variants on (columns of its rows).
VARIANT_METRICS = ["test F1-A", "test F1-B (weighted)"]


def variant_verdicts(rows: pd.DataFrame) -> dict[str, tuple[str, list, list, str]]:
    """Per variant: (the reference it is compared with, the metrics where it gains, those where it
    loses, where the noise came from: 'own', 'borrowed' or 'none'). See beyond_conclusion."""
    means = 100 * rows.groupby("variant", sort=False).mean(numeric_only=True).drop(columns="seed")
    spread = 100 * rows.groupby("variant", sort=False).std(ddof=1, numeric_only=True).drop(columns="seed")
    pseudo = [v for v in means.index if v.startswith("pseudo-labels:")]
    first_noise = spread.iloc[0].fillna(0.0)
    seeds = rows.groupby("variant", sort=False)["seed"].nunique()
    found = {}
    for variant in means.index:
        reference = pseudo[0] if variant in pseudo else means.index[0]
        if variant == reference:
            continue
        delta = means.loc[variant] - means.loc[reference]
        own_noise = spread.loc[reference].fillna(0.0)
        single = seeds[reference] < 2
        borrowed = single and seeds.iloc[0] > 1
        noise = first_noise if borrowed else own_noise
        margin = (2 * noise).where(noise > 0, 1.0)
        found[variant] = (
            reference,
            [c for c in VARIANT_METRICS if delta[c] > margin[c]],
            [c for c in VARIANT_METRICS if delta[c] < -margin[c]],
            "borrowed" if borrowed else "none" if single else "own",
        )
    return found


def most_often_right(precision: pd.DataFrame) -> list[str]:
    """The pseudo-label rules whose kept labels are most often right, the one that keeps most rows
    first (among rules equally often right, keeping more is better)."""
    rated = precision["right (%)"].dropna()
    tied = precision.loc[rated.index[rated == rated.max()]].sort_values("kept", ascending=False, kind="stable")
    return list(tied.index)


def beyond_conclusion(rows: pd.DataFrame, precision: pd.DataFrame | None, report) -> str:
    """rows: variant, seed and the metrics (fractions); each variant is compared with the paper's
    choice it replaces (the first fusion/decoding row, the first pseudo-label row), and called a
    gain only past the seed noise (twice the paper row's std). A reference run with one seed (each
    pseudo-label rule needs its own retraining) borrows the noise of the first row, the paper's model
    over the seeds, when it has several: the same recipe on the same data varies that much, so a
    one-seed difference smaller than it is no evidence. With no seed spread at all, past one point."""
    means = 100 * rows.groupby("variant", sort=False).mean(numeric_only=True).drop(columns="seed")
    sentences = [f"Caption groups: {report.summary()}."]
    for variant, (reference, gains, losses, noise_from) in variant_verdicts(rows).items():
        same = (means.loc[variant, VARIANT_METRICS] == means.loc[reference, VARIANT_METRICS]).all()
        verdict = (
            "gives the same scores"
            if same
            else "helps on " + " and ".join(gains)
            if gains and not losses
            else "does worse on " + " and ".join(losses)
            if losses and not gains
            else "trades " + " against ".join(gains + losses)
            if gains
            else "does not help: the differences are within noise"
        )
        one_seed = (
            f" (one seed, judged against the seed noise of '{means.index[0]}')"
            if noise_from == "borrowed"
            else " (one seed, no noise estimate)"
            if noise_from == "none"
            else ""
        )
        sentences.append(
            f"{variant[0].upper() + variant[1:]}: F1-A {means.loc[variant, 'test F1-A']:.1f} and weighted F1-B "
            f"{means.loc[variant, 'test F1-B (weighted)']:.1f} against {means.loc[reference, 'test F1-A']:.1f} "
            f"and {means.loc[reference, 'test F1-B (weighted)']:.1f} ({reference}); it {verdict}{one_seed}."
        )
    rated = precision["right (%)"].dropna() if precision is not None else pd.Series(dtype=float)
    if precision is not None and rated.empty:
        sentences.append("On the labelled evaluation split used as a pool, no rule kept a row at this threshold.")
    elif len(rated) > 1:
        best, *tied = most_often_right(precision)
        also = "".join(f"; '{rule}' is as often right with {precision.loc[rule, 'kept']:.0f}" for rule in tied)
        sentences.append(
            f"Used on the labelled evaluation split as if it were the pool, the rule whose kept pseudo-labels "
            f"are most often right is '{best}' ({precision.loc[best, 'right (%)']:.1f}% of "
            f"{precision.loc[best, 'kept']:.0f} kept{also})."
        )
    if rows.groupby("variant")["seed"].nunique().max() < 2:
        sentences.append("With one seed per row there is no estimate of seed noise: read small differences as none.")
    return " ".join(sentences)
