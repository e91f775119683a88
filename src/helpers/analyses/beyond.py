"""Notebook 13: the paper's three directions for future work, measured beside its own choices with
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
from helpers.study.results import Result

TITLE = "Beyond the paper"
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
    joint, report = group_decode(preds.prob_ai, preds.probs_b, captions, "hierarchical", label_b=cached.label_b)
    scores = {"per image": common.scores(cached, preds), "by caption group": common.scores(cached, joint)}
    f1 = {way: [] for way in scores}
    for inputs in outside.values():
        scored = score(model, tokenizer, inputs, cfg.eval_batch_size, desc=None)
        grouped, _, _ = decode_scored(scored, inputs.captions)
        for way, view in (("per image", scored), ("by caption group", grouped)):
            f1[way].append(outside_metrics(inputs, view).get("f1_a", np.nan))
    return scores, {way: float(np.nanmean(v)) if v else np.nan for way, v in f1.items()}, report


def fusion_and_decoding(context, captions) -> tuple[pd.DataFrame, object]:
    """Per seed: concat and attention models (the analyses' budget), concat also decoded by caption
    group. Returns (rows of variant x seed x metric, the evaluation split's group report)."""
    from helpers.evaluation.outside import outside_sets
    from helpers.modeling.building import preprocessing

    cfg, train, val = context.cfg, context.caches["train"], context.caches["validation"]
    tokenizer, _ = preprocessing(cfg)
    sets = outside_sets(cfg)
    rows, report = [], None
    for seed in cfg.seeds:
        concat = common.train_quick(cfg, train, val, seed=seed, fusion="concat")
        attention = common.train_quick(cfg, train, val, seed=seed, fusion="attention")
        concat_scores, concat_outside, report = _ways(concat, context.evaluated, captions, sets, tokenizer, cfg,
                                                      f"concat, seed {seed}")
        attention_scores, attention_outside, _ = _ways(attention, context.evaluated, captions, sets, tokenizer, cfg,
                                                       f"attention, seed {seed}")
        for variant, scores, outside in ((PAPER, concat_scores["per image"], concat_outside["per image"]),
                                         (GROUPS, concat_scores["by caption group"], concat_outside["by caption group"]),
                                         (ATTENTION, attention_scores["per image"], attention_outside["per image"])):
            rows.append({"variant": variant, "seed": seed, COLUMNS[0]: scores["f1_a"],
                         COLUMNS[1]: scores["f1_b_weighted"], COLUMNS[2]: outside})
    return pd.DataFrame(rows), report


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


def pseudo_label_rules(context, captions) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """The rules on the pool and on the stand-in pool, and the test scores of a model retrained
    with each (the profile's seed; the paper's rule is the study's own 'after' model)."""
    from helpers.study import pseudo_round, stages
    from helpers.training.pseudo_labels import augment

    cfg = context.cfg
    pool, _ = pseudo_round.pseudo_pool(cfg, context.splits, context.caches)
    before = common.train_quick(cfg, context.caches["train"], context.caches["validation"], seed=cfg.seed)
    kept, precision, selections = rule_tables(context, captions, pool, pseudo_round.pool_captions(context.splits, pool),
                                              before)
    # The study's 'after' model is the paper's rule retrained with this budget when the profile uses
    # that rule and the analyses train as long as the stages do.
    own = (stages.final_stage(cfg) == "after" and cfg.analysis_epochs in (0, cfg.epochs)
           and cfg.pseudo_balance == "none" and not cfg.pseudo_group_check)
    rows = []
    for rule in RETRAINED:
        if rule == RETRAINED[0] and own:
            model = context.model
        else:
            train_plus, val_plus, _ = augment(context.caches["train"], context.caches["validation"], pool, selections[rule])
            model = common.train_quick(cfg, train_plus, val_plus, seed=cfg.seed)
        scores, _ = common.evaluate(model, context.evaluated, cfg, rule)
        rows.append({"variant": f"pseudo-labels: {rule}", "seed": cfg.seed, COLUMNS[0]: scores["f1_a"],
                     COLUMNS[1]: scores["f1_b_weighted"], COLUMNS[2]: np.nan})
    return kept, precision, rows


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


def run(namespace: dict) -> Result:
    from helpers.data.splits import is_labelled

    context = common.prepare(namespace, "beyond", _caches_needed)
    if not context.enabled:
        return common.switched_off(context, TITLE)
    with_pool = "unlabelled" in context.splits
    captions = np.asarray(context.splits[context.split_name]["Caption"], dtype=object)[context.evaluated.rows]
    by_seed, report = fusion_and_decoding(context, captions)
    tables = {f"Caption groups of the {context.split_name} split": group_table(report)}
    numbers = {"groups": {"groups": report.groups, "images": report.images}}
    precision = None
    if with_pool and is_labelled(context.splits[context.split_name]):
        kept, precision, pseudo_rows = pseudo_label_rules(context, captions)
        by_seed = pd.concat([by_seed, pd.DataFrame(pseudo_rows)], ignore_index=True)
        tables.update({"Pseudo-labels kept per predicted class on the pool": kept,
                       f"Each rule on the {context.split_name} split used as a pool (labels known)": precision.round(2)})
        numbers.update(kept=kept.to_dict(), stand_in_precision=precision.to_dict(orient="index"))
    table = summary_table(by_seed)
    numbers.update(rows=by_seed.to_dict(orient="records"), table=table.to_dict(orient="index"))
    result = Result(TITLE, {"The paper's choice and each variant (%; mean ± std over seeds)": table,
                            **tables},
                    conclusion=beyond_conclusion(by_seed, precision, report), numbers=numbers,
                    intro=_intro(context.cfg, with_pool))
    return common.record(context, "beyond", result)


def _caches_needed(splits) -> list[str]:
    """Train and validation, and what the pseudo-label round reads when there is a pool."""
    from helpers.study.pseudo_round import pseudo_cache_names

    return pseudo_cache_names(splits) if "unlabelled" in splits else ["train", "validation"]


def _intro(cfg, with_pool: bool) -> str:
    text = (f"Fusion and decoding rows: one model per seed ({', '.join(map(str, cfg.seeds))}), trained with the "
            "analyses' budget on train and validation, scored on the evaluation split and the outside sets. "
            "Caption-group decoding uses the set's structure (each caption once per class), which images in the wild "
            "do not have. ")
    if with_pool:
        return text + (f"Pseudo-label rows: the profile's seed ({cfg.seed}), a model retrained on train plus the "
                       f"selection of the paper's rule and of the class quota (threshold {cfg.pseudo_threshold}); the "
                       "caption-group check is compared on what it keeps.")
    return text + "This profile has no unlabelled pool, so the pseudo-label rules are not compared."
