"""What the study saved, read back: which stage is final, a stage's model checked to be this run's
(identity.check_trained), what its training recorded, and its card refreshed with the report."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.config import Config
from helpers.inference.cached import pick_device
from helpers.modeling.card import write_card
from helpers.modeling.checkpoints import load_detector
from study.identity import check_trained, trained_changes, training_identity
from study.setup import model_dir

SUMMARY_KEYS = (
    "best_epoch",
    "best_metric",
    "seconds",
    "train_rows",
    "validation_rows",
    "curves",
    "epochs_run",
    "resumed_from",
    "processes",
    "per_device_batch",
    "gradient_accumulation",
    "operating_thresholds",
)


def final_stage(cfg: Config) -> str:
    """'after' when this profile pseudo-labels, else 'before'."""
    return "after" if cfg.unlabelled_split else "before"


def checked_model_dir(cfg: Config, stage: str) -> Path:
    """The stage's saved model folder, refused when it is missing or was trained under other
    settings or code than this run's: nothing stale is read as current."""
    return check_trained(
        model_dir(cfg, stage),
        training_identity(cfg, stage),
        f"run the notebook that trains the '{stage}' model for these settings, or the study (make demo, or "
        "snakemake -s workflow/Snakefile)",
    )


def final_model(cfg: Config):
    """The study's final model (after pseudo-labels when the profile has that stage), checked to be
    this run's, its tokenizer and stage name."""
    stage = final_stage(cfg)
    model, tokenizer = load_detector(checked_model_dir(cfg, stage), pick_device())
    return model, tokenizer, stage


def training_summary(folder: Path) -> dict:
    """What the training of the model saved in `folder` recorded (SUMMARY_KEYS, and the pseudo-label
    round's statistics for a model trained after one)."""
    meta = json.loads((Path(folder) / "training_meta.json").read_text())
    return {k: meta[k] for k in (*SUMMARY_KEYS, "pseudo") if k in meta}


def refresh_cards(cfg: Config, metrics: dict) -> list[Path]:
    """Each saved model of this run gets its card rewritten with the report's figures and the
    conclusions about it (at the end of a study; a model of other settings or code is left alone)."""
    return [
        write_card(model_dir(cfg, stage), metrics, stage, analysed=stage == final_stage(cfg))
        for stage in ("before", "after")
        if trained_changes(model_dir(cfg, stage), training_identity(cfg, stage)) == []
    ]
