"""Pseudo-labelling: keep the unlabelled rows both heads are sure of, split them 8:2 by
caption, and add them to train and validation."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .cache import CachedSplit
from .data import caption_mask
from .inference import Predictions
from .labels import CLASS_NAMES


def select_confident(predictions: Predictions, threshold: float) -> np.ndarray:
    """Indices of rows where both Task A and Task B confidences are >= threshold."""
    keep = (predictions.confidence_a >= threshold) & (predictions.confidence_b >= threshold)
    return np.flatnonzero(keep)


def selection_summary(predictions: Predictions, selected: np.ndarray) -> pd.DataFrame:
    """Per predicted class: rows predicted, rows kept, share kept."""
    predicted = np.bincount(predictions.label_b, minlength=len(CLASS_NAMES))
    kept = np.bincount(predictions.label_b[selected], minlength=len(CLASS_NAMES))
    frame = pd.DataFrame({"class": CLASS_NAMES, "predicted": predicted, "kept": kept})
    frame["kept_share"] = np.where(predicted > 0, kept / np.maximum(predicted, 1), 0.0)
    return frame


def split_selected(selected: np.ndarray, captions: np.ndarray, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices, about train_fraction of the captions in train; a caption's rows
    stay on one side, as in every other split of this study."""
    captions = np.asarray(captions, dtype=object)[selected]
    n_unique = len(set(captions))
    in_val = caption_mask(captions, n_unique - int(round(train_fraction * n_unique)), seed)
    return selected[~in_val], selected[in_val]


def augment(train: CachedSplit, val: CachedSplit, pool: CachedSplit, predictions: Predictions, captions: np.ndarray,
            threshold: float, train_fraction: float, seed: int) -> tuple[CachedSplit, CachedSplit, dict]:
    """Train and validation extended with the confident pseudo-labelled rows of the pool.

    captions: the caption of each pool entry (aligned with pool), used to keep captions whole."""
    selected = select_confident(predictions, threshold)
    pool_train, pool_val = split_selected(selected, captions, train_fraction, seed)
    labelled = pool.relabelled(predictions.label_a, predictions.label_b)
    new_train = CachedSplit.concat([train, labelled.subset(pool_train)])
    new_val = CachedSplit.concat([val, labelled.subset(pool_val)])
    stats = {"pool": len(pool), "selected": int(len(selected)), "to_train": int(len(pool_train)),
             "to_validation": int(len(pool_val)), "threshold": threshold,
             "per_class": selection_summary(predictions, selected).to_dict(orient="records")}
    return new_train, new_val, stats
