"""What decides a result: the profile values of the sections it reads (less those at their default),
and a saved model's identity (its training's sections and the code of the science library that
trains), checked against what a saved model recorded."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import cache
from pathlib import Path

import helpers
from helpers.config import Config
from helpers.profiles import section_values
from helpers.training.changes import changed_keys

# The sections a saved model's training reads: 'before' pseudo-labels, and 'after' them.
TRAINED_ON = {"before": ("data", "model", "training"), "after": ("data", "model", "training", "pseudo_labels")}
# The packages whose code decides a trained model: the data it sees, its caches, the model and loss,
# and the training set-up.
TRAINING_PACKAGES = ("data", "cache", "modeling", "training")
PACKAGE = Path(helpers.__file__).resolve().parent


@cache
def _defaults() -> dict:
    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(Config)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }


def settings(config: Config | dict, sections, leave_out=()) -> dict:
    """The seed and the keys of `sections` whose values differ from the Config's defaults (config: a
    Config or its to_dict()): a key added with a default leaves every earlier identity as it was."""
    defaults = _defaults()
    return {
        k: v
        for k, v in section_values(config, sections).items()
        if k not in leave_out and (k not in defaults or v != defaults[k])
    }


def training_sources() -> list[str]:
    """The source files of TRAINING_PACKAGES, sorted."""
    return sorted(str(p) for package in TRAINING_PACKAGES for p in (PACKAGE / package).rglob("*.py"))


@cache
def code_digest() -> str:
    """A digest of training_sources() (their paths within the package and their bytes): the same in
    a checkout and in an installed wheel of the same code."""
    digest = hashlib.blake2b(digest_size=8)
    for path in map(Path, training_sources()):
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def training_identity(config: Config | dict, model: str) -> dict:
    """The values that decide one saved model ('before' or 'after'): the settings of the sections its
    training reads, and the training code."""
    return {**settings(config, TRAINED_ON[model]), "training_code": code_digest()}


class StaleModelError(RuntimeError):
    """A saved model that other settings or code trained."""


def trained_changes(folder: Path, expected: dict) -> list[str] | None:
    """None when `folder` holds no trained model; else how its recorded training identity differs
    from `expected` (training_identity), [] when it does not ('no run identity recorded' for a model
    of a version that recorded none)."""
    meta = Path(folder) / "training_meta.json"
    if not meta.is_file():
        return None
    recorded = (json.loads(meta.read_text()).get("run_identity") or {}).get("params")
    return ["no run identity recorded"] if recorded is None else changed_keys(recorded, expected)


def check_trained(folder: Path, expected: dict, train_it: str) -> Path:
    """`folder`, when it holds a model trained with the settings and code `expected`; else an error
    naming what changed and `train_it`, how to train it."""
    changes = trained_changes(folder, expected)
    if changes is None:
        raise FileNotFoundError(f"{folder} holds no trained model: {train_it}")
    if changes:
        raise StaleModelError(f"{folder} was trained by another run ({'; '.join(changes)}); {train_it}")
    return Path(folder)
