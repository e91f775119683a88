"""Notebook 13's steps: the paper's three directions for future work, measured beside its own choices with
the same data, budget and seeds. (1) Fusion beyond concatenation: `fusion: attention` against
concat, trained per seed. (2) The caption's images decoded together (inference.caption_groups) on
the same concat models. (3) Pseudo-labels without the threshold's class bias: the paper's rule
against a class quota and a caption-group check, on the pool and on the test split used as a pool
whose labels are known; the paper's rule and the quota also retrained (the profile's seed)."""

from __future__ import annotations

import numpy as np

from helpers.analyses import common
from helpers.cache.dataset import CachedSplit
from helpers.evaluation.outside import outside_metrics
from helpers.inference.caption_groups import LABEL as GROUPS
from helpers.inference.caption_groups import decode_scored, group_decode
from helpers.inference.streaming import score

PAPER = "paper: concat fusion, per-image decoding"
ATTENTION = "attention fusion"
COLUMNS = ("test F1-A", "test F1-B (weighted)", "outside F1-A")


def _ways(model, cached, captions, outside: dict, tokenizer, batch_size: int, desc: str) -> tuple[dict, dict, object]:
    """({per image, by caption group} -> the evaluation split's scores, {way} -> mean outside F1-A,
    the split's group report); each set is predicted once and decoded both ways."""
    _, preds = common.evaluate(model, cached, batch_size, desc)
    joint, report = group_decode(
        preds.prob_ai, preds.probs_b, captions, model.config.task_b_decoding, label_b=cached.label_b
    )
    scores = {"per image": common.scores(cached, preds), "by caption group": common.scores(cached, joint)}
    f1 = {way: [] for way in scores}
    for inputs in outside.values():
        scored = score(model, tokenizer, inputs, batch_size, desc=None)
        grouped, _, _ = decode_scored(scored, inputs.captions, model.config.task_b_decoding)
        for way, view in (("per image", scored), ("by caption group", grouped)):
            f1[way].append(outside_metrics(inputs, view).get("f1_a", np.nan))
    return scores, {way: float(np.nanmean(v)) if v else np.nan for way, v in f1.items()}, report


def seed_rows(
    evaluated: CachedSplit, batch_size: int, captions, sets: dict, tokenizer, seed: int, models: dict
) -> tuple[list[dict], object]:
    """One seed: its concat and attention models (`models`, by fusion: variants.fusions) on the
    `evaluated` split (whose `captions` group its rows) and the outside `sets`, concat also decoded
    by caption group. Returns (a row per variant, the evaluation split's group report)."""
    concat_scores, concat_outside, report = _ways(
        models["concat"], evaluated, captions, sets, tokenizer, batch_size, f"concat, seed {seed}"
    )
    attention_scores, attention_outside, _ = _ways(
        models["attention"], evaluated, captions, sets, tokenizer, batch_size, f"attention, seed {seed}"
    )
    rows = [
        _row(variant, seed, scores, outside)
        for variant, scores, outside in (
            (PAPER, concat_scores["per image"], concat_outside["per image"]),
            (GROUPS, concat_scores["by caption group"], concat_outside["by caption group"]),
            (ATTENTION, attention_scores["per image"], attention_outside["per image"]),
        )
    ]
    return rows, report


def _row(variant: str, seed: int, scores: dict, outside: float) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        COLUMNS[0]: scores["f1_a"],
        COLUMNS[1]: scores["f1_b_weighted"],
        COLUMNS[2]: outside,
    }


def retrained_row(evaluated: CachedSplit, batch_size: int, seed: int, rule: str, model) -> dict:
    """Scores on `evaluated` of `model`, retrained from `seed` on train plus the rule's selection
    (variants.retrained; the study's own 'after' model where that is the same training)."""
    scores, _ = common.evaluate(model, evaluated, batch_size, rule)
    return _row(f"pseudo-labels: {rule}", seed, scores, np.nan)
