"""Scores on labelled image sets from outside the training distribution: Task A, the false-
positive rate on real images, recall per generator, and Task B when every label names a CT2
class. Computed over the rows that were read and carry a label; the others are counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.data.inputs import Inputs, read_inputs
from helpers.data.sources import SYNTHETIC_VERSION
from helpers.data.synthetic_outside import write_outside
from helpers.evaluation.metadata_baseline import neutralise
from helpers.evaluation.metrics import task_a_metrics, task_b_metrics
from helpers.inference.streaming import Scored, score
from helpers.labels import UNLABELLED


def outside_metrics(inputs: Inputs, scored: Scored) -> dict:
    """See the module docstring. rows_* say how many inputs each number rests on."""
    usable = scored.ok & (inputs.label_a != UNLABELLED)
    truth_a, pred_a = inputs.label_a[usable], scored.predictions.label_a[usable]
    generators = np.asarray(inputs.generator, dtype=object)[usable]
    real = truth_a == 0
    out = {
        "rows": len(inputs),
        "rows_scored": int(usable.sum()),
        "rows_unreadable": int((~scored.ok).sum()),
        "rows_without_label": int((scored.ok & (inputs.label_a == UNLABELLED)).sum()),
        "real_images": int(real.sum()),
        "rows_without_caption": int(sum(not caption for caption in inputs.captions)),
        "ai_images": int((~real).sum()),
    }
    if not usable.any():
        return out
    out.update(task_a_metrics(truth_a, pred_a))
    out["false_positive_rate_real"] = float(pred_a[real].mean()) if real.any() else float("nan")
    out["recall_per_generator"] = {
        name: float(pred_a[generators == name].mean()) for name in sorted(set(generators[~real]))
    }
    truth_b = inputs.label_b[usable]
    if (truth_b != UNLABELLED).all():
        out.update(task_b_metrics(truth_b, scored.predictions.label_b[usable]))
    return out


def conclusion(name: str, as_is: dict, neutral: dict) -> str:
    """One paragraph for the index page, from the numbers."""
    if "f1_a" not in as_is:
        return f"{name}: no labelled image could be scored."
    recalls = as_is.get("recall_per_generator", {})
    worst = min(recalls, key=recalls.get) if recalls else None
    text = (
        f"On {name} ({as_is['rows_scored']} labelled images: {as_is['real_images']} real, {as_is['ai_images']} AI), "
        f"the final model reaches F1-A {100 * as_is['f1_a']:.1f}, and calls "
        f"{100 * as_is['false_positive_rate_real']:.1f}% of real photos AI."
    )
    if worst is not None:
        text += f" Its weakest generator is {worst}, caught {100 * recalls[worst]:.1f}% of the time."
    if as_is.get("rows_without_caption"):
        text += (
            f" {as_is['rows_without_caption']} of its {as_is['rows']} images come without a caption and are read "
            "with an empty one, which the dual encoder never saw in training: give their captions for its real answer."
        )
    drop = as_is["f1_a"] - neutral.get("f1_a", as_is["f1_a"])
    fpr_change = neutral.get("false_positive_rate_real", 0.0) - as_is["false_positive_rate_real"]
    text += (
        f" With every image decoded, brought to one square size and re-encoded as JPEG, F1-A is "
        f"{100 * neutral.get('f1_a', float('nan')):.1f} and the false-positive rate "
        f"{100 * neutral.get('false_positive_rate_real', float('nan')):.1f}%. "
    )
    if abs(drop) > 0.05 or abs(fpr_change) > 0.05:
        text += (
            "That change says the model's answers depend on file format and size, not only on what the images "
            "show: do not trust its scores on files prepared differently from its training data."
        )
    else:
        text += "Its answers do not hinge on file format and size here."
    return text


def outside_sets(entries: list, data_folder: Path, image_size: int, seed: int) -> dict[str, Inputs]:
    """The outside sets `entries` (the profile's `external`) read, by name; a synthetic one is written
    first, once, under `data_folder` with `image_size` px images drawn from `seed`."""
    sets = {}
    for entry in entries:
        source = entry["source"]
        if source == "synthetic":
            count = entry.get("captions", 100)
            # Named by the generator's version too: a set written by older renderers is never read as this one.
            folder = Path(data_folder) / f"outside-v{SYNTHETIC_VERSION}-{count}-{image_size}-{seed}"
            source = write_outside(folder, count, image_size, seed)
        inputs = read_inputs(source)
        if not inputs.labelled:
            raise ValueError(
                f"external set '{entry['name']}' ({source}) has no labels: give a folder with real/ and ai/ "
                "subfolders, a CSV with a label_a column, or a data set with Label_A"
            )
        sets[entry["name"]] = inputs
    return sets


def score_views(model, tokenizer, inputs: Inputs, batch_size: int, name: str) -> dict[str, dict]:
    """The set's metrics as the files are, and on the neutral view (one size, one format)."""
    views = {"as the files are": None, "neutral view": neutralise(model.config.image_size)}
    return {
        view: outside_metrics(
            inputs, score(model, tokenizer, inputs, batch_size, transform=transform, desc=f"{name}: {view}")
        )
        for view, transform in views.items()
    }
