"""Shared steps of the analyses (notebooks 05+): short extra trainings, images under a
transform, per-generator scores, the leave-one-generator-out split, and the plain-language
conclusions written into the report from the numbers."""
from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers.cache.dataset import CachedSplit
from helpers.data.images import read_image_or_reason, square_uint8
from helpers.inference.cached import Predictions, predict
from helpers.labels import CLASS_NAMES
from helpers.evaluation.metrics import all_metrics
from helpers.study.records import json_default, write_json


@dataclass
class AnalysisRun:
    """What every analysis notebook starts from: the config, and when the analysis is on, the
    final model and the caches of the splits it needs (the evaluated one last)."""
    cfg: object
    figures: object
    enabled: bool
    splits: object = None
    model: object = None
    size: int = 0
    split_name: str = ""
    caches: dict = field(default_factory=dict)
    evaluated: CachedSplit | None = None


def setup(namespace: dict, name: str, cache_names: tuple[str, ...] = ()) -> AnalysisRun:
    """The shared start of notebooks 05-10: the run's config; when `name` is in the profile's
    analyses, the final model and the caches of cache_names plus the evaluation split."""
    from helpers.study import stages as study

    cfg = study.setup(namespace)
    run = AnalysisRun(cfg, study.figures_dir(cfg), name in cfg.analyses)
    if not run.enabled:
        print(f"this analysis is off in this profile (analyses: {cfg.analyses})")
        return run
    run.splits = study.study_splits(cfg)
    run.model, tokenizer, stage = study.final_model(cfg)
    run.size = run.model.config.image_size
    run.split_name = study.evaluation_split(run.splits)
    run.caches = study.caches_for(cfg, run.splits, tokenizer, run.size, [*cache_names, run.split_name])
    run.evaluated = run.caches[run.split_name]
    print(f"model: {stage} pseudo-labels; scored on the {run.split_name} split ({len(run.evaluated)} images)")
    return run


def quick_config(cfg, **changes):
    """The profile with the analyses' training budget (analysis_epochs) and any other changes."""
    return dataclasses.replace(cfg, epochs=cfg.analysis_epochs or cfg.epochs, **changes)


def train_quick(cfg, train: CachedSplit, val: CachedSplit, **changes):
    """A fresh model trained with quick_config(cfg, **changes); its checkpoints are thrown away."""
    from helpers.training import trainer as training
    from helpers.modeling.detector import build_model

    run_cfg = quick_config(cfg, **changes)
    model, _ = build_model(run_cfg)
    with tempfile.TemporaryDirectory(prefix="analysis-") as out:
        model, _ = training.train(run_cfg, model, train, val, out)
    return model


def scores(cached: CachedSplit, preds: Predictions) -> dict[str, float]:
    return all_metrics(cached.label_a, cached.label_b, preds.label_a, preds.label_b)


def evaluate(model, cached: CachedSplit, cfg, desc: str = "evaluate") -> tuple[dict, Predictions]:
    preds = predict(model, cached, cfg.eval_batch_size, bf16=cfg.bf16, desc=desc)
    return scores(cached, preds), preds


VIEW_CHUNK_ROWS = 1024


def _view(cell, transform, size: int) -> np.ndarray:
    image, reason = read_image_or_reason(cell)
    if image is None:  # the cache read it once; a file changed on disk since is an error, not a gap
        raise RuntimeError(f"{cell.get('path') or 'an embedded image'} was readable when cached but not now: {reason}")
    return square_uint8(transform(image), size)


def evaluate_view(model, split, cached: CachedSplit, transform, size: int, cfg, desc: str) -> tuple[dict, Predictions]:
    """Scores and predictions on the cached rows with their source images passed through
    transform(image) and preprocessed as usual. The source is read, decoded and scored one chunk
    at a time: a paper-scale evaluation split is never held in memory, encoded or decoded."""
    import datasets
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from helpers.inference.cached import decode

    images = split.select_columns(["Image"]).cast_column("Image", datasets.Image(decode=False))
    prob_ai, probs_b = [], []
    with ThreadPoolExecutor() as pool:
        for start in tqdm(range(0, len(cached), VIEW_CHUNK_ROWS), desc=desc, unit="chunk"):
            positions = np.arange(start, min(start + VIEW_CHUNK_ROWS, len(cached)))
            cells = images[cached.rows[positions].tolist()]["Image"]
            pixels = np.stack(list(pool.map(lambda cell: _view(cell, transform, size), cells)))
            part = predict(model, cached.subset(positions).with_pixels(pixels), cfg.eval_batch_size, bf16=cfg.bf16, desc=None)
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


def without_generator(cached: CachedSplit, generator: int) -> CachedSplit:
    """Every row except those of one generator (leave-one-generator-out training data)."""
    return cached.subset(np.flatnonzero(cached.label_b != generator))


def only_generator(cached: CachedSplit, generator: int) -> CachedSplit:
    return cached.subset(np.flatnonzero(cached.label_b == generator))


def mean_std(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"mean": table.mean(), "std": table.std(ddof=1) if len(table) > 1 else 0.0})


# Conclusions: one paragraph each, from the numbers.


def record_analysis(cfg, name: str, title: str, conclusion: str, figures: list[str], numbers) -> None:
    """Add one analysis to reports/<profile>/metrics.json, where the index page finds it."""
    path = cfg.reports / "metrics.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    notebook = {"audit": "05_shortcut_audit", "robustness": "06_robustness", "ablation": "07_modality_ablation",
                "unseen": "08_unseen_generators", "calibration": "09_calibration", "seeds": "10_seeds"}[name]
    current.setdefault("analyses", {})[name] = {"title": title, "conclusion": conclusion, "html": f"{notebook}.html",
                                                "figures": [f"figures/{f}.png" for f in figures],
                                                "numbers": json.loads(json.dumps(numbers, default=json_default))}
    write_json(path, current)

