"""Shortcut audit: how far file metadata alone goes, and the model on a view without it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.data.images import square_image
from helpers.evaluation.metrics import all_metrics
from helpers.evaluation.perturbations import jpeg

NUMERIC = ["width", "height", "aspect", "file_bytes", "jpeg_quality"]
NEUTRAL_QUALITY = 95


def metadata_matrix(meta: pd.DataFrame, formats: list[str]) -> np.ndarray:
    """Numeric metadata (unknown JPEG quality = -1) and one column per file format."""
    numeric = meta[NUMERIC].astype(float).fillna(-1.0).to_numpy()
    onehot = np.stack([(meta["format"] == f).to_numpy(float) for f in formats], axis=1)
    return np.hstack([numeric, onehot])


def metadata_baseline(train_meta: pd.DataFrame, eval_meta: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """Gradient-boosted trees on metadata only: one for Task A, one for Task B; scored like the model."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    formats = sorted(set(train_meta["format"]) | set(eval_meta["format"]))
    x_train, x_eval = metadata_matrix(train_meta, formats), metadata_matrix(eval_meta, formats)
    pred_a = HistGradientBoostingClassifier(random_state=seed).fit(x_train, train_meta["Label_A"]).predict(x_eval)
    pred_b = HistGradientBoostingClassifier(random_state=seed).fit(x_train, train_meta["Label_B"]).predict(x_eval)
    return all_metrics(eval_meta["Label_A"], eval_meta["Label_B"], pred_a, pred_b)


def neutral_image(image, size: int):
    """The image at one square size and in one format (JPEG at NEUTRAL_QUALITY)."""
    return jpeg(square_image(image, size), NEUTRAL_QUALITY)


def neutralise(size: int):
    """neutral_image as a transform that worker processes can receive (a partial, not a lambda)."""
    from functools import partial

    return partial(neutral_image, size=size)
