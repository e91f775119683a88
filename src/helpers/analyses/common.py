"""Scoring the analyses repeat (notebooks 05-13): a cached split's scores, the same under an image
transform (read, decoded and scored a chunk at a time), the rows scored under perturbations, and
Task A's accuracy per true class."""

from __future__ import annotations

import numpy as np

from helpers.cache.dataset import CachedSplit
from helpers.data.images import read_image_or_reason, square_uint8
from helpers.data.splits import caption_mask
from helpers.evaluation.metrics import all_metrics
from helpers.inference.cached import Predictions, decode, predict
from helpers.labels import CLASS_NAMES


def viewed_rows(split, cached: CachedSplit, captions: int, seed: int) -> CachedSplit:
    """The cached rows of `captions` captions drawn by caption with `seed` (all rows when 0)."""
    if not captions:
        return cached
    texts = np.asarray(split["Caption"], dtype=object)[cached.rows]
    return cached.subset(np.flatnonzero(caption_mask(texts, captions, seed)))


def scores(cached: CachedSplit, preds: Predictions) -> dict[str, float]:
    return all_metrics(cached.label_a, cached.label_b, preds.label_a, preds.label_b)


def evaluate(model, cached: CachedSplit, batch_size: int, desc: str = "evaluate") -> tuple[dict, Predictions]:
    preds = predict(model, cached, batch_size, desc=desc)
    return scores(cached, preds), preds


VIEW_CHUNK_ROWS = 1024


def _view(cell, transform, size: int) -> np.ndarray:
    image, reason = read_image_or_reason(cell)
    if image is None:  # the cache read it once; a file changed on disk since is an error, not a gap
        raise RuntimeError(f"{cell.get('path') or 'an embedded image'} was readable when cached but not now: {reason}")
    return square_uint8(transform(image), size)


def evaluate_view(
    model, split, cached: CachedSplit, transform, size: int, batch_size: int, desc: str
) -> tuple[dict, Predictions]:
    """Scores and predictions on the cached rows with their source images passed through
    transform(image) and preprocessed as usual. The source is read, decoded and scored one chunk
    at a time: a paper-scale evaluation split is never held in memory, encoded or decoded."""
    from concurrent.futures import ThreadPoolExecutor

    import datasets
    from tqdm.auto import tqdm

    images = split.select_columns(["Image"]).cast_column("Image", datasets.Image(decode=False))
    blank = cached.blank if cached.blank is not None else np.zeros(len(cached), bool)
    prob_ai, probs_b = [], []
    with ThreadPoolExecutor() as pool:
        for start in tqdm(range(0, len(cached), VIEW_CHUNK_ROWS), desc=desc, unit="chunk"):
            positions = np.arange(start, min(start + VIEW_CHUNK_ROWS, len(cached)))
            cells = images[cached.rows[positions].tolist()]["Image"]
            # An unreadable image (bad_images: zero) stays the all-zero input under every view.
            pixels = np.stack(
                list(
                    pool.map(
                        lambda cell, empty: (
                            np.zeros((3, size, size), np.uint8) if empty else _view(cell, transform, size)
                        ),
                        cells,
                        blank[positions],
                    )
                )
            )
            part = predict(model, cached.subset(positions).with_pixels(pixels), batch_size, desc=None)
            prob_ai.append(part.prob_ai)
            probs_b.append(part.probs_b)
    preds = decode(np.concatenate(prob_ai), np.concatenate(probs_b), mode=model.config.task_b_decoding)
    return scores(cached, preds), preds


def task_a_accuracy_per_class(cached: CachedSplit, preds: Predictions) -> dict[str, float]:
    """For each true class, the share whose Task A answer is right (recall for generators, specificity for real)."""
    out = {}
    for cls, name in enumerate(CLASS_NAMES):
        mask = cached.label_b == cls
        if mask.any():
            out[name] = float((preds.label_a[mask] == cached.label_a[mask]).mean())
    return out
