"""What decides a result: the run's identity (every key but where it executes), a training stage's
identity, their hashes, and the changes between two identities, named."""

from __future__ import annotations

from helpers.config import Config

# Keys that say how or where a run executes, not what it computes: a resume or a rerun with other
# values of these is still the same run (see identity()).
EXECUTION_KEYS = (
    "resume",
    "notebook_timeout",
    "num_workers",
    "device_cache",
    "report_dir",
    "work_dir",
    "processes",
    "per_device_max_batch",
    "ddp_timeout",
    "report_to",
    "notebook_lanes",
    "keep_analysis_models",
)
# Keys that no training stage reads: a checkpoint or saved stage made under other values of these
# is still the same training (changing the seed study must not retrain the main model).
NOT_TRAINING_KEYS = ("analyses", "analysis_epochs", "seeds", "view_captions", "external", "test_split")
# Keys that only the pseudo-label round and the 'after' stage read.
PSEUDO_KEYS = (
    "unlabelled_dataset",
    "unlabelled_split",
    "unlabelled_revision",
    "pool_overlap",
    "pseudo_threshold",
    "pseudo_train_fraction",
    "pseudo_confidence",
    "pseudo_split",
    "pseudo_balance",
    "pseudo_group_check",
)


def identity(config: Config | dict) -> dict:
    """The values that decide what a run computes (every key but EXECUTION_KEYS); config may be
    a Config or its to_dict() as recorded in provenance."""
    values = config.to_dict() if isinstance(config, Config) else config
    return {k: v for k, v in values.items() if k not in EXECUTION_KEYS}


def training_identity(config: Config | dict, stage: str) -> dict:
    """The values that decide one training stage: the 'before' stage reads neither the analyses'
    keys nor the pseudo-label keys; the 'after' stage also reads the pseudo-label keys."""
    left_out = NOT_TRAINING_KEYS + (PSEUDO_KEYS if stage == "before" else ())
    return {k: v for k, v in identity(config).items() if k not in left_out}


def identity_hash(values: Config | dict) -> str:
    import hashlib
    import json

    values = identity(values) if isinstance(values, Config) else values
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def changed_keys(old: dict, new: dict) -> list[str]:
    """Keys whose values differ between two identities, each as 'key: old -> new'."""
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
