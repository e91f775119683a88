"""Shortcut audit: how far file metadata alone goes, and the model on a view without it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.data.images import square_image
from helpers.evaluation.metrics import all_metrics
from helpers.evaluation.perturbations import jpeg

NUMERIC = ["width", "height", "aspect", "file_bytes", "jpeg_quality"]
NEUTRAL_QUALITY = 95


def metadata_matrix(meta: pd.DataFrame, formats: list[str], columns=(*NUMERIC, "format")) -> np.ndarray:
    """The metadata `columns`: numbers as they are (unknown JPEG quality = -1), the file format as
    one column per format in `formats`."""
    return np.hstack(
        [
            np.stack([(meta["format"] == f).to_numpy(float) for f in formats], axis=1)
            if column == "format"
            else meta[[column]].astype(float).fillna(-1.0).to_numpy()
            for column in columns
        ]
    )


def metadata_baseline(train_meta: pd.DataFrame, eval_meta: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """Gradient-boosted trees on metadata only: one for Task A, one for Task B; scored like the model."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    formats = sorted(set(train_meta["format"]) | set(eval_meta["format"]))
    x_train, x_eval = metadata_matrix(train_meta, formats), metadata_matrix(eval_meta, formats)
    pred_a = HistGradientBoostingClassifier(random_state=seed).fit(x_train, train_meta["Label_A"]).predict(x_eval)
    pred_b = HistGradientBoostingClassifier(random_state=seed).fit(x_train, train_meta["Label_B"]).predict(x_eval)
    return all_metrics(eval_meta["Label_A"], eval_meta["Label_B"], pred_a, pred_b)


# Each cue the audit tries alone (its metadata columns), then all of them together.
CUES = {
    "format": ["format"],
    "size (width, height)": ["width", "height"],
    "aspect": ["aspect"],
    "file size": ["file_bytes"],
    "JPEG quality": ["jpeg_quality"],
    "size and aspect": ["width", "height", "aspect"],
}


def cue_audit(meta: pd.DataFrame, seed: int = 0, depth: int = 4, folds: int = 5) -> pd.DataFrame:
    """Per metadata cue alone (CUES) and all of them: the balanced accuracy of a depth-`depth` tree
    fitted and scored by cross-validation on this split's own metadata, for Task A and Task B
    (chance: 0.5 and one over the classes present). A classifier trained on the training split's
    metadata can miss a cue that still answers this split (a shift that made every AI image square,
    say): this asks the split itself."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.tree import DecisionTreeClassifier

    cues = {**CUES, "all of them": ["format", *NUMERIC]}
    rows = {}
    for name, columns in cues.items():
        features = metadata_matrix(meta, sorted(set(meta["format"])), columns)
        row = {}
        for task in ("Label_A", "Label_B"):
            labels = meta[task].to_numpy()
            splits = min(folds, np.unique(labels, return_counts=True)[1].min()) if len(labels) else 0
            if splits < 2:
                row[task] = np.nan
                continue
            cv = StratifiedKFold(splits, shuffle=True, random_state=seed)
            guessed = cross_val_predict(
                DecisionTreeClassifier(max_depth=depth, random_state=seed), features, labels, cv=cv
            )
            row[task] = balanced_accuracy_score(labels, guessed)
        rows[name] = {"Task A": row["Label_A"], "Task B": row["Label_B"]}
    table = pd.DataFrame(rows).T
    table.loc["chance"] = [0.5, 1 / max(1, meta["Label_B"].nunique())]
    return table


def neutral_image(image, size: int):
    """The image at one square size and in one format (JPEG at NEUTRAL_QUALITY)."""
    return jpeg(square_image(image, size), NEUTRAL_QUALITY)


def neutralise(size: int):
    """neutral_image as a transform that worker processes can receive (a partial, not a lambda)."""
    from functools import partial

    return partial(neutral_image, size=size)
