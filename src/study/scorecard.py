"""The saved models' scores: each on validation and the labelled test split, its prediction files
and the competition JSON, its scores kept on an Evaluation for notebook 04 to show and record; and
the outside sets' record for notebook 11.

Every input gets a prediction in the files: an image that cannot be read is scored as a black
image (as the authors' code scores it) and flagged. Metrics leave such rows out under
bad_images: skip and include them under bad_images: zero (where training did too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helpers.data.splits import is_labelled
from helpers.evaluation import metrics, outside
from helpers.inference.cached import Predictions, pick_device, predict
from helpers.inference.caption_groups import group_decode
from helpers.modeling.checkpoints import load_detector
from study import records, saved, setup, stages


@dataclass
class Evaluation:
    stages: list[str]
    scored: list[str]  # splits with labels, in order
    scores: dict = field(default_factory=dict)  # split -> stage -> metrics
    confusions: dict = field(default_factory=dict)  # (split, stage) -> 6x6 counts
    per_class: list = field(default_factory=list)  # per-generator accuracy tables
    files: list = field(default_factory=list)
    figures: list = field(default_factory=list)  # names of this evaluation's figures
    grouped: dict = field(default_factory=dict)  # split -> stage -> per image / by caption group -> metrics
    groups: dict = field(default_factory=dict)  # split -> caption_groups.GroupReport


def saved_stages(cfg) -> list[str]:
    """The stages this profile trains, each checked to be this run's model (saved.checked_model_dir)."""
    names = ["before"] + (["after"] if saved.final_stage(cfg) == "after" else [])
    for stage in names:
        saved.checked_model_dir(cfg, stage)
    return names


def scored_splits(splits) -> list[str]:
    return ["validation"] + (["test"] if "test" in splits and is_labelled(splits["test"]) else [])


def score_stage(cfg, splits, stage: str, result: Evaluation, out_dir: Path) -> Evaluation:
    """Score one saved stage on every split it predicts, write its prediction files (and, for the
    last stage, the competition JSON) into out_dir, and add its scores to `result`."""
    names = [n for n in ("validation", "test", "unlabelled") if n in splits]
    model, tokenizer = load_detector(setup.model_dir(cfg, stage), pick_device())
    caches = stages.caches_for(cfg, splits, tokenizer, model.config.image_size, names)
    for name, cached in caches.items():
        # One entry per row: under bad_images: skip the unreadable rows are added on the all-zero input.
        complete = stages.with_zero_inputs(cfg, splits[name], name, cached, tokenizer, model.config.image_size)
        per_image = predict(model, complete, cfg.eval_batch_size, desc=f"{stage} {name}")
        joint = by_caption_group(result, splits[name], name, complete, per_image, model.config.task_b_decoding)
        preds = joint if model.config.task_b_decoding == "caption_groups" else per_image
        result.files.append(write_predictions(out_dir / f"{name}_{stage}.csv", complete, preds))
        if name in result.scored:
            keep = np.arange(len(complete)) < len(cached)  # the rows training and metrics use
            result.grouped.setdefault(name, {})[stage] = {
                way: metrics.all_metrics(
                    complete.label_a[keep], complete.label_b[keep], p.label_a[keep], p.label_b[keep]
                )
                for way, p in (("per image", per_image), ("by caption group", joint))
            }
            result.scores.setdefault(name, {})[stage] = metrics.metrics_both_ways(
                complete.label_a[keep],
                complete.label_b[keep],
                preds.label_a[keep],
                preds.label_b[keep],
                preds.probs_b[keep],
            )
            result.confusions[(name, stage)] = metrics.confusion(complete.label_b[keep], preds.label_b[keep])
            result.per_class.append(
                metrics.per_generator_accuracy(complete.label_b[keep], preds.label_a[keep], preds.label_b[keep]).assign(
                    model=stage, split=name
                )
            )
        if stage == result.stages[-1] and name in ("unlabelled", "test"):
            result.files.append(
                write_submission(out_dir / f"{name}_submission.json", complete, preds, len(splits[name]))
            )
    return result


def by_caption_group(result: Evaluation, split, name: str, complete, per_image: Predictions, mode: str) -> Predictions:
    """The same predictions decoded by caption group (inference.caption_groups), the groups' class
    probabilities and the other rows read as the model decodes (`mode`); the split's group
    report is kept on the result."""
    captions = np.asarray(split["Caption"], dtype=object)[complete.rows]
    labels = complete.label_b if is_labelled(split) else None
    joint, result.groups[name] = group_decode(per_image.prob_ai, per_image.probs_b, captions, mode, label_b=labels)
    return joint


def write_predictions(path: Path, cached, preds: Predictions) -> Path:
    """One row per input, in the split's order; unreadable images flagged (scored on the zero input)."""
    blank = cached.blank if cached.blank is not None else np.zeros(len(cached), bool)
    frame = metrics.predictions_frame(
        preds.prob_ai,
        preds.probs_b,
        preds.label_a,
        preds.label_b,
        {"source_row": cached.rows, "unreadable_image": blank},
    )
    frame = frame.sort_values("source_row", kind="stable").drop(columns="index")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def write_submission(path: Path, cached, preds: Predictions, n_inputs: int) -> Path:
    """The competition JSON with exactly one entry per input index."""
    order = np.argsort(cached.rows, kind="stable")
    if not np.array_equal(cached.rows[order], np.arange(n_inputs)):
        raise RuntimeError(
            f"{path.name}: predictions cover {len(set(cached.rows))} of {n_inputs} inputs; "
            "every input must have one entry"
        )
    return metrics.write_competition_json(path, preds.label_a[order], preds.label_b[order], cached.rows[order])


def conclusion(result: Evaluation) -> str:
    split = result.scored[-1]
    final = result.stages[-1]
    values = result.scores[split][final]
    text = (
        f"On the {split} split the final model ({final} pseudo-labels) reaches F1-A {100 * values['f1_a']:.2f} and "
        f"weighted F1-B {100 * values['f1_b_weighted']:.2f} (plain argmax over six classes: "
        f"{100 * values['f1_b_weighted_argmax']:.2f})."
    )
    if len(result.stages) == 2:
        before = result.scores[split]["before"]
        text += (
            f" Pseudo-labels changed F1-A by {100 * (values['f1_a'] - before['f1_a']):+.2f} and weighted F1-B by "
            f"{100 * (values['f1_b_weighted'] - before['f1_b_weighted']):+.2f} points."
        )
    if split in result.grouped:
        joint, values = result.grouped[split][final]["by caption group"], result.grouped[split][final]["per image"]
        text += (
            f"\n\nDecoded by caption group ({result.groups[split].summary()}), which uses the set's "
            f"one-image-per-class structure and is not available to a detector in the wild: F1-A "
            f"{100 * joint['f1_a']:.2f} and weighted F1-B {100 * joint['f1_b_weighted']:.2f}, against "
            f"{100 * values['f1_a']:.2f} and {100 * values['f1_b_weighted']:.2f} per image."
        )
    return text


def record_outside(cfg, name: str, views: dict[str, dict], figure: str) -> str:
    """Add one outside set's numbers and conclusion to the outside sets' record
    (reports/<profile>/records/external.json); returns the conclusion."""
    text = outside.conclusion(name, views["as the files are"], views["neutral view"])
    entry = {"conclusion": text, "figure": f"figures/{figure}.png", "views": views}
    records.write_record(cfg, "external", {"external": {name: entry}})
    return text
