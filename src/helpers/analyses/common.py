"""Shared steps of the analyses (notebooks 05-13): the context an analysis starts from (the final
model, the caches it needs, the split it scores), images under a transform, per-class scores, and
the record of an analysis for the report. The models the analyses train are variants.py's."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from helpers.cache.dataset import CachedSplit
from helpers.data.images import read_image_or_reason, square_uint8
from helpers.data.splits import caption_mask
from helpers.evaluation.metrics import all_metrics
from helpers.inference.cached import Predictions, decode, predict
from helpers.labels import CLASS_NAMES
from helpers.study import saved, setup, stages
from helpers.study.records import write_record
from helpers.study.saved import final_stage
from helpers.study.setup import study_splits


@dataclass
class Context:
    """What an analysis starts from: the study's splits, the final model, the caches of the splits
    it needs and the evaluation split (all of it, and the rows scored under perturbations)."""

    cfg: object
    splits: object
    model: object
    tokenizer: object
    stage: str
    size: int
    split_name: str
    caches: dict = field(default_factory=dict)
    evaluated: CachedSplit | None = None
    viewed: CachedSplit | None = None  # the rows scored under perturbations (view_captions)

    def __repr__(self) -> str:
        return (
            f"Context(final model: {self.stage} pseudo-labels, {self.size} px; scored on the {self.split_name} "
            f"split: {len(self.evaluated)} images, {len(self.viewed)} of them under perturbations; caches: "
            f"{', '.join(f'{n} {len(c)}' for n, c in self.caches.items())})"
        )


def prepare(cfg, name: str, cache_names=()) -> Context:
    """The final model (notebooks 02-03 must have saved it for this run's settings) and the caches
    of cache_names (names, or a function of the study's splits giving them) plus the evaluation
    split. Stops when `name` is not in the profile's analyses."""
    setup.require(name in cfg.analyses, f"the '{name}' analysis", f"analyses: {list(cfg.analyses)}")
    splits = study_splits(cfg)
    model, tokenizer, stage = saved.final_model(cfg)
    size = model.config.image_size
    split_name = stages.evaluation_split(splits)
    names = cache_names(splits) if callable(cache_names) else cache_names
    caches = stages.caches_for(cfg, splits, tokenizer, size, [*names, split_name])
    evaluated = caches[split_name]
    return Context(
        cfg,
        splits,
        model,
        tokenizer,
        stage,
        size,
        split_name,
        caches,
        evaluated,
        viewed_rows(splits[split_name], evaluated, cfg.view_captions, cfg.seed),
    )


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


def model_read(cfg, reads: str | None = None) -> str:
    """The sentence that says which model an analysis reads: `reads`, or the study's final model;
    a model trained on pseudo-labels from a pool that may hold the scored images says so."""
    if reads is not None:
        return f"Model read: {reads}."
    stage = final_stage(cfg)
    text = f"Model read: the study's final model ({stage} pseudo-labels)."
    if stage == "after" and cfg.pool_overlap == "keep":
        text += (
            " Its pseudo-label pool may hold the scored images themselves (pool_overlap: keep, the authors' "
            "transductive setup): it has seen them in training, unlabelled."
        )
    return text


def record(cfg, name: str, conclusion: str, numbers: dict, figures=(), reads: str | None = None) -> str:
    """The analysis's conclusion (ending with which model it reads, model_read), figures and numbers
    in its record, reports/<profile>/records/<name>.json, where the index page finds them; returns
    the conclusion for the notebook to show. reads: the models the analysis scored when they are not
    the study's final model (those it trained itself, say); None: the final model, and then its
    record names that model's stage, whose card alone carries the conclusion."""
    conclusion = f"{conclusion} {model_read(cfg, reads)}"
    entry = {
        "conclusion": conclusion,
        "figures": [f"figures/{f}.png" for f in figures],
        "numbers": numbers,
        "model": final_stage(cfg) if reads is None else None,
    }
    write_record(cfg, name, {"analyses": {name: entry}})
    return conclusion
