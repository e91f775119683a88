"""The training stages of the study: decode caches of its splits, and a stage trained (in this
process, or in each of torchrun's) or loaded when this run finished it. What the run saved, checked
to be this run's: saved.py."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.cache.dataset import CachedSplit
from helpers.cache.store import blank_rows, build_cache
from helpers.config import Config
from helpers.data.splits import is_labelled
from helpers.evaluation.metrics import compute_metrics_for
from helpers.evaluation.thresholds import operating_thresholds
from helpers.inference.cached import pick_device, predict
from helpers.modeling.card import write_card
from helpers.modeling.checkpoints import load_detector, save_detector
from helpers.training import distributed
from helpers.training import trainer as training
from helpers.training.arguments import training_arguments
from study.identity import training_identity
from study.provenance import provenance
from study.saved import training_summary
from study.setup import caption_template, model_dir


def caches_for(cfg: Config, splits, tokenizer, image_size: int, names=None) -> dict[str, CachedSplit]:
    """The decode cache of each named split. Under bad_images: zero, rows whose image cannot be
    read come after the cached ones, with the all-zero input (they keep their failures entry)."""
    names = names or list(splits)
    root = cfg.run_dir.parent / "cache"
    # Every process asks for each cache: the first builds it under its file lock, the others sleep
    # in the lock and then open it (no collective, so no process-group timeout applies).
    caches = {
        name: build_cache(
            splits[name],
            name,
            root,
            image_size,
            tokenizer,
            cfg.max_caption_length,
            cfg.bad_images,
            caption_template=caption_template(cfg, name),
        )
        for name in names
    }
    if cfg.bad_images == "zero":
        for name, cached in caches.items():
            if cached.n_failed:
                print(f"{name}: {cached.n_failed} unreadable image(s) get the all-zero input (bad_images: zero)")
        caches = {
            name: with_zero_inputs(cfg, splits[name], name, cached, tokenizer, image_size)
            for name, cached in caches.items()
        }
    return caches


def with_zero_inputs(cfg: Config, split, name: str, cached, tokenizer, image_size: int):
    """The cache plus those of its unreadable rows it does not hold yet, each on the all-zero input
    (blank_rows): one entry per row of the split."""
    missing = np.setdiff1d(cached.failures["row"].to_numpy(), cached.rows) if cached.n_failed else []
    if not len(missing):
        return cached
    blanks = blank_rows(split, missing, image_size, tokenizer, cfg.max_caption_length, caption_template(cfg, name))
    # An unreadable row has no digest (b""), which the pool-overlap check never matches.
    digests = None if cached.digests is None else np.concatenate([cached.digests, np.full(len(blanks), b"", "S16")])
    return dataclasses.replace(CachedSplit.concat([cached, blanks]), failures=cached.failures, digests=digests)


def training_data(caches: dict, held_out) -> tuple[CachedSplit, CachedSplit]:
    """The cached train and validation splits a stage trains on: every row but those of the
    held-out generators (the profile's held_out_classes)."""
    return tuple(without_classes(caches[name], held_out) for name in ("train", "validation"))


def without_classes(cached: CachedSplit, classes) -> CachedSplit:
    if not len(classes):
        return cached
    return cached.subset(np.flatnonzero(~np.isin(cached.label_b, list(classes))))


def training_args(cfg: Config, stage: str, folder: Path | None = None):
    """The TrainingArguments of a stage ('before' or 'after' pseudo-labels) whose model is saved to
    `folder` (default: the study's, model_dir): checkpoints beside it (checkpoint_dir), the global
    batch split over the profile's processes."""
    processes = distributed.world_size() if distributed.launched() else cfg.processes
    return training_arguments(cfg.training_spec, checkpoint_dir(folder or model_dir(cfg, stage)), processes)


def checkpoint_dir(folder: Path) -> Path:
    """Where the training of the model saved to `folder` keeps its checkpoints: beside it, never in
    it (the engine removes a rerun job's outputs, and a rerun continues from these)."""
    return folder.with_name(f"{folder.name}.checkpoints")


class SavedStage:
    """A stage this run finished already (resume: auto; in a notebook, the model the engine's
    torchrun job saved), with a Trainer's train() and model: train() only loads, after checking the
    saved model is this run's."""

    def __init__(self, stage: str, folder: Path, current: dict):
        self.stage, self.folder, self.current = stage, folder, current
        self.model, self.meta = None, None

    def train(self):
        print(f"stage '{self.stage}' already finished for this run: loading {self.folder} (resume: auto)")
        self.meta = json.loads((self.folder / "training_meta.json").read_text())
        saved_identity = dict(self.meta.get("run_identity") or {}, processes=self.current["processes"])
        training.check_same_run(saved_identity, self.current, str(self.folder))
        self.model, _ = load_detector(self.folder, pick_device())

    def __repr__(self) -> str:
        return f"stage '{self.stage}': finished earlier by this run (resume: auto): loaded, not trained again, from {self.folder}"


class NeedsLauncher(RuntimeError):
    """A training of several processes asked of one: torchrun (or the engine, which starts it) runs it."""


def stage_trainer(
    cfg: Config, stage: str, model, train_data, val_data, args, extra: dict | None = None, folder: Path | None = None
):
    """What trains the stage whose model is saved to `folder` (default: the study's, model_dir): the
    study's Trainer over the two cached splits (training.trainer's stage_trainer; with resume: auto
    it continues from this run's last complete checkpoint), or a SavedStage when the stage is
    finished (resume: auto). A training of processes > 1 outside torchrun is refused with the
    command that runs it (the engine starts it so: this library launches nothing)."""
    folder = folder or model_dir(cfg, stage)
    finished = cfg.resume == "auto" and (folder / "training_meta.json").is_file()
    if finished:
        # The identity the saved model is checked against (training.stage_trainer makes its own).
        current = training.run_identity(training_identity(cfg, stage), train_data, val_data, cfg.processes)
        return SavedStage(stage, folder, current)
    if cfg.processes > 1 and not distributed.launched():
        distributed.batch_plan(cfg.batch_size, cfg.processes, cfg.per_device_max_batch)
        raise NeedsLauncher(
            f"processes: {cfg.processes} trains in {cfg.processes} processes, which torchrun starts: "
            f"torchrun --nproc_per_node {cfg.processes} -m study.train PROFILE --stage {stage} (the study's "
            "engine runs it so, and this notebook then loads the model it saved)"
        )
    return training.stage_trainer(
        cfg.training_spec,
        model,
        train_data,
        val_data,
        args,
        compute_metrics_for(model.config.task_b_decoding),
        training_identity(cfg, stage),
        {**provenance(cfg), **(extra or {})},
        resume=cfg.resume == "auto",
    )


def finish_stage(cfg: Config, stage: str, trainer, tokenizer, reference, folder: Path | None = None):
    """After trainer.train(): the trained model with its operating thresholds (set on `reference`,
    the labelled validation split without pseudo-labels), saved with its tokenizer and card to
    `folder` (default: the study's, model_dir), its summary in training_meta.json; its checkpoints
    removed. Returns the model, the training loss per logging step and the per-epoch validation
    metrics."""
    if isinstance(trainer, SavedStage):
        train_loss, eval_metrics = training.learning_curves(pd.DataFrame(trainer.meta["history"]))
        return trainer.model, train_loss, eval_metrics
    return _save_trained(cfg, stage, trainer, tokenizer, reference, folder or model_dir(cfg, stage))


def train_stage(
    cfg: Config,
    stage: str,
    model,
    tokenizer,
    train_data,
    val_data,
    extra: dict | None = None,
    reference=None,
    folder: Path | None = None,
):
    """Train `model` (fresh from modeling.building.build_model) for one stage ('before' or 'after'
    pseudo-labels) as notebook 02 does step by step: its arguments, its trainer, train(), and
    finish_stage (reference: default val_data), saving to `folder` (default: the study's). With
    resume: auto, a stage already finished by the same run is loaded, not trained again, and a
    stage cut short continues from its last complete checkpoint."""
    args = training_args(cfg, stage, folder)
    trainer = stage_trainer(cfg, stage, model, train_data, val_data, args, extra, folder)
    trainer.train()
    return finish_stage(cfg, stage, trainer, tokenizer, val_data if reference is None else reference, folder)


def _save_trained(cfg: Config, stage: str, trainer, tokenizer, reference, folder: Path):
    run, model = training.training_run(trainer), trainer.model
    train_loss, eval_metrics = training.learning_curves(run.history)
    best = eval_metrics.loc[eval_metrics[f"eval_{cfg.metric_for_best}"].idxmax()]
    processes = distributed.world_size()
    per_device, accumulation = distributed.batch_plan(cfg.batch_size, processes, cfg.per_device_max_batch)
    summary = {
        "best_epoch": float(best["epoch"]),
        "best_metric": float(best[f"eval_{cfg.metric_for_best}"]),
        "seconds": round(float(run.history["train_runtime"].dropna().iloc[-1]), 1),
        "train_rows": len(trainer.train_dataset),
        "validation_rows": len(trainer.eval_dataset),
        "curves": eval_metrics.to_dict(orient="records"),
        "epochs_run": run.epochs_run,
        "resumed_from": run.resumed_from,
        "processes": processes,
        "per_device_batch": per_device,
        "gradient_accumulation": accumulation,
    }
    if distributed.is_main():
        # Head A's thresholds on the labelled reference split, stored in the model.
        prob_ai = predict(model, reference, cfg.eval_batch_size, desc="operating thresholds").prob_ai
        model.config.operating_thresholds = summary["operating_thresholds"] = operating_thresholds(
            prob_ai, reference.label_a
        )
        save_detector(
            model,
            tokenizer,
            folder,
            {
                **trainer.marker.provenance,
                **summary,
                "run_identity": run.run_identity,
                "history": run.history.to_dict(orient="records"),
            },
        )
        write_card(folder, stage=stage)
        # The saved model is the stage's result; its checkpoints (2.4 GB each at paper scale) only
        # served a resume of the training, which is over.
        shutil.rmtree(checkpoint_dir(folder), ignore_errors=True)
    distributed.barrier()
    return model, train_loss, eval_metrics


def stage_conclusion(cfg: Config, stage: str, model) -> str:
    """The trained stage in a sentence: best epoch, time, rows, size, where it was saved."""
    best = training_summary(model_dir(cfg, stage))
    return (
        f"Best epoch {best['best_epoch']:.0f} of {cfg.epochs} (`{cfg.metric_for_best}` = {best['best_metric']:.4f}), "
        f"trained in {best['seconds']} s on {best['train_rows']:,} rows; {parameter_count(model)}. Saved to "
        f"`{model_dir(cfg, stage)}` (config with both encoders' configs, weights, tokenizer, provenance)."
    )


def parameter_count(model) -> str:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{total:,} parameters, {trainable:,} trainable"


def evaluation_split(splits) -> str:
    """Where the analyses score: the labelled test split, else validation."""
    return "test" if "test" in splits and is_labelled(splits["test"]) else "validation"
