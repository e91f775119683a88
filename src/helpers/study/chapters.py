"""The study's core notebooks, one call each: 02 train, 03 pseudo-label and retrain, 04 evaluate,
11 outside sets. Each returns a results.Result whose intro and conclusion are written from the
profile and the numbers."""
from __future__ import annotations

import pandas as pd

from helpers.data.splits import study_splits
from helpers.study import narrative, records, setup, stages
from helpers.study.results import Result, with_figures


def _parameters(model) -> str:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{total:,} parameters, {trainable:,} trainable"


def _cache_tables(splits, caches) -> dict[str, pd.DataFrame]:
    tables = {"Decode cache": pd.DataFrame({n: {"rows": len(splits[n]), "cached": len(c), "unreadable": c.n_failed}
                                            for n, c in caches.items()}).T}
    tables.update({f"Unreadable images in {n} (first 10)": c.failures.head(10) for n, c in caches.items() if c.n_failed})
    return tables


def _stage_conclusion(cfg, stage: str, model) -> str:
    best = records.recorded(cfg, f"train_{stage}")
    return (f"Best epoch {best['best_epoch']:.0f} of {cfg.epochs} (`{cfg.metric_for_best}` = {best['best_metric']:.4f}), "
            f"trained in {best['seconds']} s on {best['train_rows']:,} rows; {_parameters(model)}. Saved to "
            f"`{setup.model_dir(cfg, stage)}` (config with both encoders' configs, weights, tokenizer, provenance).")


def train(namespace: dict) -> Result:
    """Notebook 02: decode caches of train and validation, then the 'before' stage."""
    from helpers.modeling.building import preprocessing
    from helpers.study import plots

    cfg = setup.setup(namespace)
    splits = study_splits(cfg)
    tokenizer, image_size = preprocessing(cfg)
    caches = stages.caches_for(cfg, splits, tokenizer, image_size, ["train", "validation"])
    model, _, train_loss, eval_metrics = stages.train_stage(cfg, "before", caches["train"], caches["validation"],
                                                            {"unreadable": stages.read_failures(caches)})
    intro = " ".join([narrative.towers(cfg, image_size), narrative.captions(cfg), narrative.unreadable_images(cfg),
                      narrative.best_epoch(cfg)])
    result = Result("Training", {**_cache_tables(splits, caches), "Validation per epoch": eval_metrics.round(4)},
                    conclusion=_stage_conclusion(cfg, "before", model), intro=intro)
    return with_figures(result, setup.figures_dir(cfg),
                        {"curves_before": plots.learning_curves(train_loss, eval_metrics, "without pseudo-labels")})


def _overlap_table(stats: dict) -> pd.DataFrame:
    shared = (stats.get("overlap") or {}).get("shared") or {}
    return pd.DataFrame(shared).T.rename(columns={"captions": "pool rows sharing a caption",
                                                  "images": "pool rows sharing an image"})


def pseudo_label(namespace: dict) -> Result:
    """Notebook 03: the pseudo-label round with the saved 'before' model, then the 'after' stage."""
    from helpers.modeling.checkpoints import load_detector
    from helpers.inference.cached import pick_device
    from helpers.study import plots, pseudo_round

    cfg = setup.setup(namespace)
    if not cfg.unlabelled_split:
        return Result("Pseudo-labels", conclusion="Pseudo-labelling is off in this profile (`unlabelled_split: ''`).")
    splits = study_splits(cfg)
    base, tokenizer = load_detector(stages.checked_model_dir(cfg, "before"), pick_device())
    caches = stages.caches_for(cfg, splits, tokenizer, base.config.image_size, pseudo_round.pseudo_cache_names(splits))
    train_plus, val_plus, stats, predictions = pseudo_round.pseudo_round(cfg, splits, caches, base)
    model, _, train_loss, eval_metrics = stages.train_stage(cfg, "after", train_plus, val_plus, {"pseudo": stats},
                                                            reference=caches["validation"])
    kept = (f"{stats['selected']:,} of {stats['pool']:,} pool rows were kept: train {len(caches['train']):,} → "
            f"{len(train_plus):,} rows, validation {len(caches['validation']):,} → {len(val_plus):,}. ")
    result = Result("Pseudo-labels", {"Kept per predicted class": pd.DataFrame(stats["per_class"]).set_index("class"),
                                      "Kept per predicted class by the paper's rule and by the bias-aware rules of "
                                      "notebook 13": pd.DataFrame(stats["kept_by_rule"]),
                                      "Pool rows shared with other splits": _overlap_table(stats),
                                      "Validation per epoch, retrained": eval_metrics.round(4)},
                    conclusion=kept + _stage_conclusion(cfg, "after", model), intro=narrative.pseudo_labels(cfg))
    return with_figures(result, setup.figures_dir(cfg), {
        "pseudo_confidence": plots.confidence_histogram(predictions.confidence_a, predictions.confidence_b,
                                                        cfg.pseudo_threshold),
        "curves_after": plots.learning_curves(train_loss, eval_metrics, "with pseudo-labels")})


def evaluate(namespace: dict) -> Result:
    """Notebook 04: every saved stage on validation and the labelled test split, the prediction
    files and competition JSON, sample files to try the prediction command on."""
    from helpers.evaluation import scorecard

    cfg = setup.setup(namespace)
    splits = study_splits(cfg)
    evaluation = scorecard.evaluate_models(cfg, splits, cfg.reports / "predictions")
    figures = scorecard.figures(evaluation)
    samples = stages.export_samples(splits["test"], cfg.run_dir / "sample_images") if "test" in splits else None
    scorecard.record_metrics(cfg, evaluation)
    per_generator = evaluation.per_generator().pivot_table(index="class", columns=["split", "model"],
                                                           values="task_b_accuracy", sort=False)
    files = "\n".join(f"- `{path}`" for path in evaluation.files)
    try_it = (f"\n\n{len(list(samples.iterdir()))} test images are in `{samples}`: score them, or a folder of your own, "
              f"with `python -m helpers.predict --model {setup.model_dir(cfg, evaluation.stages[-1])} --images "
              f"{samples} --out preds.csv`." if samples else "")
    intro = (f"{narrative.decoding(cfg)} {narrative.unreadable_images(cfg)} Task B is also shown as the plain argmax "
             "over the six classes (`*_argmax`), which is what the authors' validation reports, so the paper's 85.95 is "
             "compared like with like.")
    result = Result("Evaluation", {"Scores (%)": evaluation.table().round(2),
                                   "Task-B accuracy per true class": per_generator.round(3),
                                   "Per image and by caption group (uses the set's one-image-per-class structure; %)":
                                       evaluation.grouped_table().round(2),
                                   "Caption groups of each split": evaluation.group_table()},
                    conclusion=f"{scorecard.conclusion(evaluation)}\n\nPrediction files:\n{files}{try_it}", intro=intro)
    return with_figures(result, setup.figures_dir(cfg), figures)


def outside(namespace: dict) -> Result:
    """Notebook 11: each outside set as the files are and on the neutral view."""
    from helpers.evaluation import outside as outside_sets
    from helpers.study import plots

    cfg = setup.setup(namespace)
    sets = outside_sets.outside_sets(cfg)
    if not sets:
        return Result("Outside sets", conclusion="This profile names no outside sets (`external: []`).")
    model, tokenizer, stage = stages.final_model(cfg)
    result = Result("Outside sets", intro=f"The final model ({stage} pseudo-labels) on "
                                          + ", ".join(f"{name} ({len(inputs):,} images)" for name, inputs in sets.items()))
    conclusions = []
    for name, inputs in sets.items():
        views = outside_sets.score_views(model, tokenizer, inputs, cfg.eval_batch_size, name)
        table = outside_sets.metrics_table(views)
        result.tables[f"{name} (%)"] = table.round(1)
        figure = outside_sets.figure_name(name)
        with_figures(result, setup.figures_dir(cfg), {figure: plots.outside_bars(table, name)})
        conclusions.append(outside_sets.record(cfg, name, views, figure))
    result.conclusion = "\n\n".join(conclusions)
    return result
