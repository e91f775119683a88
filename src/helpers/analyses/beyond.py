"""Notebook 13's steps: the paper's three directions for future work, measured beside its own choices with
the same data, budget and seeds. (1) Fusion beyond concatenation: `fusion: attention` against
concat, trained per seed. (2) The caption's images decoded together (inference.caption_groups) on
the same concat models. (3) Pseudo-labels without the threshold's class bias: the paper's rule
against a class quota and a caption-group check, on the pool and on the test split used as a pool
whose labels are known; the paper's rule and the quota also retrained (the profile's seed)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.analyses import common
from helpers.analyses.conclusions import beyond_conclusion
from helpers.inference.caption_groups import LABEL as GROUPS
from helpers.inference.caption_groups import group_decode
from helpers.labels import CLASS_NAMES
from helpers.study.pseudo_round import RULES

PAPER = "paper: concat fusion, per-image decoding"
ATTENTION = "attention fusion"
# The rules a model is retrained with (the paper's and the class quota; the group check is compared
# on its selections only, to keep the demo's budget).
RETRAINED = tuple(RULES)[:2]
COLUMNS = ("test F1-A", "test F1-B (weighted)", "outside F1-A")


def _ways(model, cached, captions, outside: dict, tokenizer, cfg, desc: str) -> tuple[dict, dict, object]:
    """({per image, by caption group} -> the evaluation split's scores, {way} -> mean outside F1-A,
    the split's group report); each set is predicted once and decoded both ways."""
    from helpers.evaluation.outside import outside_metrics
    from helpers.inference.caption_groups import decode_scored
    from helpers.inference.streaming import score

    _, preds = common.evaluate(model, cached, cfg, desc)
    joint, report = group_decode(preds.prob_ai, preds.probs_b, captions, model.config.task_b_decoding,
                                 label_b=cached.label_b)
    scores = {"per image": common.scores(cached, preds), "by caption group": common.scores(cached, joint)}
    f1 = {way: [] for way in scores}
    for inputs in outside.values():
        scored = score(model, tokenizer, inputs, cfg.eval_batch_size, desc=None)
        grouped, _, _ = decode_scored(scored, inputs.captions, model.config.task_b_decoding)
        for way, view in (("per image", scored), ("by caption group", grouped)):
            f1[way].append(outside_metrics(inputs, view).get("f1_a", np.nan))
    return scores, {way: float(np.nanmean(v)) if v else np.nan for way, v in f1.items()}, report


def seed_rows(context, captions, sets: dict, tokenizer, seed: int) -> tuple[list[dict], object]:
    """One seed: concat and attention models (the analyses' budget), concat also decoded by caption
    group. Returns (a row per variant, the evaluation split's group report)."""
    cfg, train, val = context.cfg, context.caches["train"], context.caches["validation"]
    concat = common.train_quick(cfg, train, val, seed=seed, fusion="concat")
    attention = common.train_quick(cfg, train, val, seed=seed, fusion="attention")
    concat_scores, concat_outside, report = _ways(concat, context.evaluated, captions, sets, tokenizer, cfg,
                                                  f"concat, seed {seed}")
    attention_scores, attention_outside, _ = _ways(attention, context.evaluated, captions, sets, tokenizer, cfg,
                                                   f"attention, seed {seed}")
    rows = [_row(variant, seed, scores, outside) for variant, scores, outside in (
        (PAPER, concat_scores["per image"], concat_outside["per image"]),
        (GROUPS, concat_scores["by caption group"], concat_outside["by caption group"]),
        (ATTENTION, attention_scores["per image"], attention_outside["per image"]))]
    return rows, report


def _row(variant: str, seed: int, scores: dict, outside: float) -> dict:
    return {"variant": variant, "seed": seed, COLUMNS[0]: scores["f1_a"], COLUMNS[1]: scores["f1_b_weighted"],
            COLUMNS[2]: outside}


def rule_tables(context, captions, pool, pool_captions, before) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(kept per predicted class on the pool under each rule, pseudo-label precision of each rule
    on the evaluation split used as a pool, the selections on the pool)."""
    from helpers.inference.cached import predict
    from helpers.study.pseudo_round import kept_by_rule, selections_by_rule

    cfg = context.cfg
    on_pool = predict(before, pool, cfg.eval_batch_size, bf16=cfg.bf16, desc="pool")
    on_test = predict(before, context.evaluated, cfg.eval_batch_size, bf16=cfg.bf16, desc=context.split_name)
    selections = selections_by_rule(cfg, on_pool, pool_captions)
    precision = {}
    for rule, stand_in in selections_by_rule(cfg, on_test, captions).items():
        chosen = np.concatenate([stand_in.to_train, stand_in.to_validation])
        right = stand_in.label_b[chosen] == context.evaluated.label_b[chosen]
        precision[rule] = {"kept": len(chosen), "right (%)": 100 * float(right.mean()) if len(chosen) else np.nan,
                           "smallest class kept": int(np.bincount(stand_in.label_b[chosen], minlength=len(CLASS_NAMES)).min()
                                                      if len(chosen) else 0)}
    return kept_by_rule(selections), pd.DataFrame(precision).T, selections


def compares_rules(context) -> bool:
    """The pseudo-label rules are compared when there is a pool and the evaluation split has labels."""
    from helpers.data.splits import is_labelled

    return "unlabelled" in context.splits and is_labelled(context.splits[context.split_name])


def retrained_row(context, rule: str, pool, selection) -> dict:
    """Test scores of a model retrained on train plus the rule's selection (the profile's seed).
    The study's own 'after' model is that model when the profile uses the paper's rule and the
    analyses train as long as the stages do: it is scored, not trained again."""
    from helpers.study import stages
    from helpers.training.pseudo_labels import augment

    cfg = context.cfg
    own = (rule == RETRAINED[0] and stages.final_stage(cfg) == "after" and cfg.analysis_epochs in (0, cfg.epochs)
           and cfg.pseudo_balance == "none" and not cfg.pseudo_group_check)
    if own:
        model = context.model
    else:
        train_plus, val_plus, _ = augment(context.caches["train"], context.caches["validation"], pool, selection)
        model = common.train_quick(cfg, train_plus, val_plus, seed=cfg.seed)
    scores, _ = common.evaluate(model, context.evaluated, cfg, rule)
    return _row(f"pseudo-labels: {rule}", cfg.seed, scores, np.nan)


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """variant x metric as 'mean ± std (n)' in percent, in the order the rows came."""
    shown = {}
    for variant, group in rows.groupby("variant", sort=False):
        cells = {}
        for column in COLUMNS:
            values = 100 * group[column].dropna()
            cells[column] = ("n/a" if values.empty else f"{values.mean():.2f}" if len(values) == 1
                             else f"{values.mean():.2f} ± {values.std(ddof=1):.2f}")
        cells["seeds"] = len(group)
        shown[variant] = cells
    return pd.DataFrame(shown).T


def group_table(report) -> pd.DataFrame:
    return pd.DataFrame({"groups": report.groups, "images": report.images})


def caption_of_rows(context) -> np.ndarray:
    """The caption of each evaluated row (caption-group decoding and the group check read them)."""
    return np.asarray(context.splits[context.split_name]["Caption"], dtype=object)[context.evaluated.rows]


def intro(cfg, with_pool: bool) -> str:
    text = (f"Fusion and decoding rows: one model per seed ({', '.join(map(str, cfg.seeds))}), trained with the "
            "analyses' budget on train and validation, scored on the evaluation split and the outside sets. "
            "Caption-group decoding uses the set's structure (each caption once per class), which images in the wild "
            "do not have. ")
    if with_pool:
        return text + (f"Pseudo-label rows: the profile's seed ({cfg.seed}), a model retrained on train plus the "
                       f"selection of the paper's rule and of the class quota (threshold {cfg.pseudo_threshold}); the "
                       "caption-group check is compared on what it keeps.")
    return text + "This profile has no unlabelled pool, so the pseudo-label rules are not compared."


def numbers(by_seed: pd.DataFrame, table: pd.DataFrame, report, kept=None, precision=None) -> dict:
    """What metrics.json keeps of notebook 13: every row, the summary table, the caption groups and,
    when the rules were compared, what each kept and how often it was right."""
    found = {"groups": {"groups": report.groups, "images": report.images}, "rows": by_seed.to_dict(orient="records"),
             "table": table.to_dict(orient="index")}
    if kept is not None:
        found.update(kept=kept.to_dict(), stand_in_precision=precision.to_dict(orient="index"))
    return found
