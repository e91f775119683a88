"""The steps the notebooks share: set-up, caches, models and metric records on disk."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from . import cache as cache_mod
from .config import Config, from_notebook
from .data import study_splits  # noqa: F401 (the notebooks call study.study_splits)
from .provenance import provenance


def project_root(start: Path | None = None) -> Path:
    """The folder holding pyproject.toml, so notebooks run the same from notebooks/ or the root."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "src" / "helpers").is_dir():
            return folder
    raise FileNotFoundError(f"no project root (pyproject.toml with src/helpers) above {here}")


def setup(namespace: dict) -> Config:
    """The notebook's config from its parameters; work from the project root; seeds set."""
    from transformers import set_seed

    os.chdir(project_root())
    cfg = from_notebook(namespace)
    set_seed(cfg.seed)
    for folder in (cfg.run_dir, cfg.reports, figures_dir(cfg)):
        folder.mkdir(parents=True, exist_ok=True)
    return cfg


def figures_dir(cfg: Config) -> Path:
    return cfg.reports / "figures"


def model_dir(cfg: Config, stage: str) -> Path:
    return cfg.run_dir / f"model_{stage}"


def caches_for(cfg: Config, splits, tokenizer, image_size: int, names=None) -> dict[str, cache_mod.CachedSplit]:
    from accelerate import PartialState

    names = names or list(splits)
    root = cfg.run_dir.parent / "cache"
    # Under torchrun the first process builds the cache while the others wait, then they read it.
    with PartialState().main_process_first():
        return {name: cache_mod.build_cache(splits[name], name, root, image_size, tokenizer, cfg.max_caption_length,
                                            cfg.bad_images) for name in names}


def train_stage(cfg: Config, stage: str, train_data, val_data, extra: dict | None = None):
    """Train a fresh model for one stage ('before' or 'after' pseudo-labels), save it, record it.
    Returns the model, its tokenizer and the per-epoch validation metrics."""
    import time

    from accelerate import PartialState

    from . import training
    from .model import build_model, save_detector

    started = time.perf_counter()
    run_provenance = {**provenance(cfg), **(extra or {})}
    model, tokenizer = build_model(cfg)
    model, history = training.train(cfg, model, train_data, val_data, cfg.run_dir / f"checkpoints_{stage}", run_provenance)
    train_loss, eval_metrics = training.learning_curves(history)
    best = eval_metrics.loc[eval_metrics[f"eval_{cfg.metric_for_best}"].idxmax()]
    summary = {"best_epoch": float(best["epoch"]), "best_metric": float(best[f"eval_{cfg.metric_for_best}"]),
               "seconds": round(time.perf_counter() - started, 1), "train_rows": len(train_data),
               "validation_rows": len(val_data), "curves": eval_metrics.to_dict(orient="records")}
    if PartialState().is_main_process:
        save_detector(model, tokenizer, model_dir(cfg, stage),
                      {**run_provenance, **summary, "history": history.to_dict(orient="records")})
        record(cfg, f"train_{stage}", summary)
    return model, tokenizer, train_loss, eval_metrics


def pseudo_round(cfg: Config, splits, caches: dict, model):
    """Predict the unlabelled pool with `model`; return (train+, validation+, stats, predictions)."""
    from . import inference, pseudo

    pool = caches["unlabelled"]
    predictions = inference.predict(model, pool, cfg.eval_batch_size, bf16=cfg.bf16, desc="predict unlabelled")
    captions = np.asarray(splits["unlabelled"]["Caption"], dtype=object)[pool.rows]
    train_plus, val_plus, stats = pseudo.augment(caches["train"], caches["validation"], pool, predictions, captions,
                                                 cfg.pseudo_threshold, cfg.pseudo_train_fraction, cfg.seed)
    record(cfg, "pseudo", stats)
    return train_plus, val_plus, stats, predictions


def final_model(cfg: Config):
    """The study's final model (after pseudo-labels when that stage ran), its tokenizer and stage name."""
    from .model import load_detector

    stage = "after" if (model_dir(cfg, "after") / "config.json").is_file() else "before"
    model, tokenizer = load_detector(model_dir(cfg, stage), device())
    return model, tokenizer, stage


def evaluation_split(splits) -> str:
    """Where the analyses score: the labelled test split, else validation."""
    from .data import is_labelled

    return "test" if "test" in splits and is_labelled(splits["test"]) else "validation"


def export_samples(split, folder: Path, per_class: int = 2) -> Path:
    """A few images of each class written out as ordinary files, to try the prediction command on."""
    import datasets
    from PIL import Image

    from .labels import CLASS_NAMES

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    split = split.cast_column("Image", datasets.Image(decode=False))
    labels = np.asarray(split["Label_B"])
    for cls, name in enumerate(CLASS_NAMES):
        for row in np.flatnonzero(labels == cls)[:per_class]:
            raw = split[int(row)]["Image"]["bytes"]
            suffix = (Image.open(io.BytesIO(raw)).format or "bin").lower()
            (folder / f"{name.replace(' ', '_').replace('.', '')}_{row}.{suffix}").write_bytes(raw)
    return folder


def read_failures(caches: dict) -> dict[str, int]:
    return {name: c.n_failed for name, c in caches.items()}


def record(cfg: Config, section: str, values) -> Path:
    """Merge values under `section` into run_dir/record.json, the hand-over between notebooks."""
    path = cfg.run_dir / "record.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    current[section] = values
    path.write_text(json.dumps(current, indent=2, default=json_default))
    return path


def recorded(cfg: Config, section: str):
    path = cfg.run_dir / "record.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    if section not in current:
        raise KeyError(f"'{section}' is not recorded in {path}: run the earlier notebooks of the study first")
    return current[section]


def json_default(value):
    """JSON for numpy scalars and arrays; anything else as text."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")

