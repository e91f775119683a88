"""The steps the notebooks share: set-up, caches, models and metric records on disk."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from . import cache as cache_mod
from .config import Config, from_notebook
from .data import study_splits
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
    names = names or list(splits)
    root = cfg.run_dir.parent / "cache"
    return {name: cache_mod.build_cache(splits[name], name, root, image_size, tokenizer, cfg.max_caption_length,
                                        cfg.bad_images) for name in names}


def read_failures(caches: dict) -> dict[str, int]:
    return {name: c.n_failed for name, c in caches.items()}


def record(cfg: Config, section: str, values) -> Path:
    """Merge values under `section` into run_dir/record.json, the hand-over between notebooks."""
    path = cfg.run_dir / "record.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    current[section] = values
    path.write_text(json.dumps(current, indent=2, default=_plain))
    return path


def recorded(cfg: Config, section: str):
    path = cfg.run_dir / "record.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    if section not in current:
        raise KeyError(f"'{section}' is not recorded in {path}: run the earlier notebooks of the study first")
    return current[section]


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def training_provenance(cfg: Config) -> dict:
    return provenance(cfg)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


__all__ = ["setup", "study_splits", "caches_for", "record", "recorded", "model_dir", "figures_dir", "device"]
