"""What decides a result: the run's identity (every section but `run`, which says where and how it
executes), a training stage's identity (the sections its stage in notebooks/stages.yaml reads),
their hashes, and the changes between two identities, named."""

from __future__ import annotations

from helpers.config import Config
from helpers.profiles import SECTIONS, section_values
from helpers.stage_table import digest, load_table

# Every section but the one that says how or where a run executes: a resume or a rerun with other
# values of `run` is still the same run.
COMPUTING = tuple(s for s in SECTIONS if s != "run")


def identity(config: Config | dict) -> dict:
    """The values that decide what a run computes; config may be a Config or its to_dict() as
    recorded in provenance."""
    return section_values(config, COMPUTING)


def training_identity(config: Config | dict, model: str) -> dict:
    """The values that decide one saved model ('before' or 'after'): the sections its training stage reads."""
    return load_table().trained_by(model).identity(config)


def identity_hash(values: Config | dict) -> str:
    return digest(identity(values) if isinstance(values, Config) else values)


def changed_keys(old: dict, new: dict) -> list[str]:
    """Keys whose values differ between two identities, each as 'key: old -> new'."""
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
