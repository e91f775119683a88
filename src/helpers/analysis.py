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

from .cache import CachedSplit
from .imageio import read_image_or_reason, square_uint8
from .inference import Predictions, predict
from .labels import CLASS_NAMES
from .metrics import all_metrics
from .records import json_default, write_json


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
    from . import study

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
    from . import training
    from .model import build_model

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

    from .inference import decode

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

def robustness_conclusion(curves: pd.DataFrame) -> str:
    """curves: columns perturbation, level, f1_a, f1_b_weighted; per perturbation the first
    level is the unperturbed one and the last the strongest."""
    parts, drops = [], {}
    for name, group in curves.groupby("perturbation", sort=False):
        clean, strongest = group.iloc[0], group.iloc[-1]
        drops[name] = clean["f1_a"] - group["f1_a"].min()
        parts.append(f"{name.replace('_', ' ')} {strongest['level']:g}: F1-A {100 * clean['f1_a']:.1f} → "
                     f"{100 * strongest['f1_a']:.1f}, weighted F1-B {100 * clean['f1_b_weighted']:.1f} → "
                     f"{100 * strongest['f1_b_weighted']:.1f}")
    weakest = max(drops, key=drops.get)
    if drops[weakest] < 0.005:
        verdict = "No perturbation moved F1-A by as much as half a point."
    elif drops[weakest] > 0.10:
        verdict = (f"The detector is fragile: {weakest.replace('_', ' ')} alone costs it "
                   f"{100 * drops[weakest]:.1f} points of F1-A, and such edits are routine on the web.")
    else:
        verdict = (f"The largest loss, {100 * drops[weakest]:.1f} points of F1-A, comes from "
                   f"{weakest.replace('_', ' ')}; every perturbation stays within 10 points.")
    return f"At the strongest setting of each perturbation — {'; '.join(parts)}. {verdict}"


def ablation_conclusion(table: pd.DataFrame) -> str:
    """table: index text/image/both, columns f1_a, f1_b_weighted."""
    text, image, both = (100 * table.loc[m] for m in ("text", "image", "both"))
    chance_b = 100 * (1 / 6)
    at_chance = text["f1_b_weighted"] < 2 * chance_b and text["f1_a"] <= 100 * 2 * (5 / 6) / (1 + 5 / 6) + 1
    text_part = (f"Text alone reaches F1-A {text['f1_a']:.1f} and weighted F1-B {text['f1_b_weighted']:.1f}; "
                 + ("that is the level of always answering 'AI' and guessing the generator, as it should be when every "
                    "caption appears under all six classes. " if at_chance else
                    "that is above chance, which on data where every caption appears under all six classes points to a "
                    "leak between captions and labels worth investigating. "))
    gain = both["f1_b_weighted"] - image["f1_b_weighted"]
    return (text_part + f"Image alone: {image['f1_a']:.1f} / {image['f1_b_weighted']:.1f}; both: {both['f1_a']:.1f} / "
            f"{both['f1_b_weighted']:.1f}. Adding the caption to the image changes weighted F1-B by {gain:+.1f} points"
            + (", so the multi-modal design earns little here." if abs(gain) < 2 else "."))


def unseen_conclusion(table: pd.DataFrame) -> str:
    """table: one row per held-out generator with recall_held_out, recall_seen (Task-A recall)
    and real_specificity (share of real photos called real)."""
    worst, best = table["recall_held_out"].idxmin(), table["recall_held_out"].idxmax()
    mean_unseen, mean_seen = 100 * table["recall_held_out"].mean(), 100 * table["recall_seen"].mean()
    specificity = 100 * table["real_specificity"].mean()
    if specificity < 50:
        return (f"These models call most real photos AI too (only {specificity:.1f}% of real photos are called real), "
                f"so their recall on unseen generators ({mean_unseen:.1f}%) says little; train longer "
                "(analysis_epochs) before reading this analysis.")
    return (f"Trained without a generator, the detector still flags {mean_unseen:.1f}% of that generator's images as AI "
            f"on average (against {mean_seen:.1f}% for the generators it was trained on). Hardest to catch unseen: "
            f"{worst} ({100 * table.loc[worst, 'recall_held_out']:.1f}%); easiest: {best} "
            f"({100 * table.loc[best, 'recall_held_out']:.1f}%). "
            f"Real photos are called real {specificity:.1f}% of the time. "
            + ("Detection does not transfer well to new generators: expect a drop on images from models absent in "
               "training." if mean_seen - mean_unseen > 10 else "Detection transfers to the held-out generators here."))


def calibration_conclusion(result: dict) -> str:
    return (f"Head A's expected calibration error is {result['ece_before']:.3f} as trained and {result['ece_after']:.3f} "
            f"after temperature scaling (T = {result['temperature']:.2f}, fitted on validation). "
            + ("Its probabilities were over-confident; " if result["temperature"] > 1.05 else
               "Its probabilities were under-confident; " if result["temperature"] < 0.95 else "Its probabilities were close to calibrated; ")
            + f"P(AI) = 0.9 should be read after scaling. The F1-maximising threshold on validation is "
            f"{result['threshold']:.3f}; on the evaluation split it gives F1-A {100 * result['f1_at_best']:.1f} against "
            f"{100 * result['f1_at_half']:.1f} at 0.5.")


def seeds_conclusion(summary: pd.DataFrame, seeds: list) -> str:
    a, b = summary.loc["f1_a"], summary.loc["f1_b_weighted"]
    return (f"Over {len(seeds)} seeds ({', '.join(map(str, seeds))}), F1-A is {100 * a['mean']:.1f} ± {100 * a['std']:.1f} "
            f"and weighted F1-B {100 * b['mean']:.1f} ± {100 * b['std']:.1f} (mean ± standard deviation). Differences "
            f"between models smaller than about {200 * max(a['std'], b['std']):.1f} points are within seed noise.")


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

