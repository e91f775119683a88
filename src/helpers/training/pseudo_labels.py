"""Pseudo-labelling: keep the unlabelled rows both heads are sure of, split them 8:2 (by caption,
or by row as the authors' code), and add them to train and validation. Past the paper, the kept
rows can be balanced over the predicted classes and checked against their caption group."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.cache.dataset import CachedSplit
from helpers.data.splits import caption_mask
from helpers.files import written_whole
from helpers.inference.cached import Predictions, decode
from helpers.inference.caption_groups import group_decode
from helpers.labels import CLASS_NAMES, NUM_CLASSES, REAL
from helpers.training.changes import changed_keys


def decoded_class(predictions) -> np.ndarray:
    """Each row's class as its answers decode (predictions: anything with label_a and label_b, such
    as Predictions or a Selection): real where head A says real, head B's class otherwise. Under six_class, label_b is head B's unmasked six-way argmax, whose 'real' column is
    never trained (Task B's loss sees AI rows only): read alone, it calls no row real."""
    return np.where(predictions.label_a == 1, predictions.label_b, REAL)


def select_confident(predictions: Predictions, threshold: float) -> np.ndarray:
    """Indices of rows where both Task A and Task B confidences are >= threshold."""
    keep = (predictions.confidence_a >= threshold) & (predictions.confidence_b >= threshold)
    return np.flatnonzero(keep)


def class_quota(predictions: Predictions, selected: np.ndarray) -> np.ndarray:
    """The selected rows, at most as many per predicted class as the class with the fewest selected
    rows has (classes with none do not set the quota), the most confident first."""
    labels = decoded_class(predictions)[selected]
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if not counts.any():
        return selected
    quota = counts[counts > 0].min()
    sureness = np.minimum(predictions.confidence_a, predictions.confidence_b)[selected]
    kept = [
        selected[labels == cls][np.argsort(-sureness[labels == cls], kind="stable")[:quota]]
        for cls in np.flatnonzero(counts)
    ]
    return np.sort(np.concatenate(kept))


def agrees_with_group(predictions: Predictions, captions: np.ndarray, selected: np.ndarray, mode: str) -> np.ndarray:
    """The selected rows whose own class (decoded_class) is the one their complete caption group
    gives them when decoded jointly (rows of incomplete groups pass: there is no group to disagree).
    The group's P(real) is 1 - P(AI) (caption_groups.class_probabilities), so a row's own answer is
    read the same way: real where head A says real."""
    joint, report = group_decode(predictions.prob_ai, predictions.probs_b, captions, mode)
    agrees = ~report.jointly | (joint.label_b == decoded_class(predictions))
    return selected[agrees[selected]]


def selection_summary(predictions: Predictions, selected: np.ndarray) -> pd.DataFrame:
    """Per predicted class (decoded_class): rows predicted, rows kept, share kept."""
    classes = decoded_class(predictions)
    predicted = np.bincount(classes, minlength=len(CLASS_NAMES))
    kept = np.bincount(classes[selected], minlength=len(CLASS_NAMES))
    frame = pd.DataFrame({"class": CLASS_NAMES, "predicted": predicted, "kept": kept})
    frame["kept_share"] = np.where(predicted > 0, kept / np.maximum(predicted, 1), 0.0)
    return frame


def split_selected(
    selected: np.ndarray, captions: np.ndarray, train_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices, about train_fraction of the captions in train; a caption's rows
    stay on one side, as in every other split of this study."""
    captions = np.asarray(captions, dtype=object)[selected]
    n_unique = len(set(captions))
    in_val = caption_mask(captions, n_unique - int(round(train_fraction * n_unique)), seed)
    return selected[~in_val], selected[in_val]


@dataclass
class Selection:
    """A pseudo-label round's outcome: labels for every pool entry, and which entries go to train
    and to validation."""

    label_a: np.ndarray
    label_b: np.ndarray
    to_train: np.ndarray
    to_validation: np.ndarray
    stats: dict

    @property
    def classes(self) -> np.ndarray:
        """Each pool entry's class as decoded (decoded_class): what its pseudo-labels call it."""
        return decoded_class(self)


def split_rows(selected: np.ndarray, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) as datasets' train_test_split(test_size=1 - train_fraction, seed=seed) draws
    them over the selected rows, in its order: the authors' split, reproduced by calling it."""
    import datasets

    if len(selected) < 2 or train_fraction >= 1.0:
        return selected, selected[:0]
    parts = datasets.Dataset.from_dict({"i": selected}).train_test_split(
        test_size=round(1 - train_fraction, 10), seed=seed
    )
    return np.asarray(parts["train"]["i"], np.int64), np.asarray(parts["test"]["i"], np.int64)


def six_class_view(predictions: Predictions) -> Predictions:
    """The authors' pseudo-labels: A = P(AI) > 0.5; B = the argmax over all six classes, with the
    top softmax probability as its confidence, not masked by A (a row can be A real, B SD 3)."""
    decoded = decode(predictions.prob_ai, predictions.probs_b, mode="six_class")
    return Predictions(
        decoded.prob_ai,
        decoded.probs_b,
        decoded.label_a,
        decoded.probs_b.argmax(1),
        decoded.confidence_a,
        decoded.confidence_b,
    )


def select(
    predictions: Predictions,
    captions: np.ndarray,
    threshold: float,
    train_fraction: float,
    seed: int,
    confidence: str = "hierarchical",
    split: str = "captions",
    balance: str = "none",
    group_check: bool = False,
) -> Selection:
    """captions: the caption of each pool entry (aligned with the pool), used to keep captions
    whole when split is "captions". confidence: "hierarchical" (the decoded answers) or
    "six_class" (six_class_view). group_check, then balance (class_quota) narrow the confident rows."""
    if confidence == "six_class":
        predictions = six_class_view(predictions)
    confident = select_confident(predictions, threshold)
    selected = agrees_with_group(predictions, captions, confident, confidence) if group_check else confident
    disagreeing = len(confident) - len(selected)
    if balance == "class_quota":
        selected = class_quota(predictions, selected)
    if split == "rows":
        to_train, to_val = split_rows(selected, train_fraction, seed)
    else:
        to_train, to_val = split_selected(selected, captions, train_fraction, seed)
    stats = {
        "pool": len(predictions.label_a),
        "selected": int(len(selected)),
        "to_train": int(len(to_train)),
        "to_validation": int(len(to_val)),
        "threshold": threshold,
        "confidence": confidence,
        "split": split,
        "balance": balance,
        "group_check": group_check,
        "confident": int(len(confident)),
        "dropped_by_group_check": int(disagreeing),
        "per_class": selection_summary(predictions, selected).to_dict(orient="records"),
    }
    return Selection(predictions.label_a, predictions.label_b, to_train, to_val, stats)


def augment(
    train: CachedSplit, val: CachedSplit, pool: CachedSplit, selection: Selection
) -> tuple[CachedSplit, CachedSplit, dict]:
    """Train and validation extended with the selected pseudo-labelled rows of the pool (views
    over the caches: no pixels are copied)."""
    labelled = pool.relabelled(selection.label_a, selection.label_b)
    new_train = CachedSplit.concat([train, labelled.subset(selection.to_train)])
    new_val = CachedSplit.concat([val, labelled.subset(selection.to_validation)])
    return new_train, new_val, selection.stats


def save_selection(path: Path, selection: Selection, made_by: dict) -> Path:
    """Written whole or not at all, with what made it (pool, model, settings), so that it is never
    applied to another pool or read after the model or the settings changed."""
    with written_whole(path) as partial:
        np.savez(
            partial,
            label_a=selection.label_a,
            label_b=selection.label_b,
            to_train=selection.to_train,
            to_validation=selection.to_validation,
            made_by=np.array(json.dumps(made_by, sort_keys=True)),
            stats=np.array(json.dumps(selection.stats, default=int)),
        )
    return path


def load_selection(path: Path, made_by: dict) -> tuple[Selection | None, str]:
    """(the saved selection, "") when it was made by made_by; else (None, why not)."""
    if not path.is_file():
        return None, f"no saved selection at {path}"
    with np.load(path) as saved:
        recorded = json.loads(str(saved["made_by"])) if "made_by" in saved else {}
        if recorded != made_by:
            changes = [
                f"{k} ({what})"
                for k, what in (("pool", "other rows"), ("model", "other weights"))
                if recorded.get(k) != made_by[k]
            ]
            changes += changed_keys(recorded.get("settings", {}), made_by["settings"])
            return None, f"{path.name} is stale: {'; '.join(changes)} changed"
        return Selection(
            saved["label_a"],
            saved["label_b"],
            saved["to_train"],
            saved["to_validation"],
            json.loads(str(saved["stats"])),
        ), ""
