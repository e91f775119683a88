"""Training with the Hugging Face Trainer, as in the paper: evaluate every epoch, keep the
best epoch by a Task-A metric, load it at the end, keep the latest checkpoint (and the best
while it is another one).

Checkpoints hold everything a resume needs (weights, optimizer, scheduler, RNG states, the
trainer state with its epoch and best metric). A checkpoint counts as complete once every
process has written its part and the main process has written provenance.json into it; a
resume starts from the newest complete one and refuses one made by another run.
"""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from helpers.cache.dataset import CachedSplit, collate, length_buckets, with_text_features
from helpers.files import write_json
from helpers.modeling.compiled import compile_repeated_blocks
from helpers.modeling.loss import global_counts
from helpers.training import distributed
from helpers.training.arguments import training_arguments
from helpers.training.changes import changed_keys
from helpers.training.spec import TrainingSpec

MARKER = "provenance.json"


@dataclass
class TrainingRun:
    """What a training returns beside the model: the Trainer's log (a row per logging step and per
    evaluation), the best checkpoint and its metric, the epochs this process ran, the checkpoint it
    resumed from (None: from the start) and the run identity its checkpoints carry."""

    history: pd.DataFrame
    best_checkpoint: str | None
    best_metric: float | None
    epochs_run: float
    resumed_from: str | None
    run_identity: dict


class ResumeError(RuntimeError):
    """A checkpoint that belongs to another run (other settings, data or process count)."""


class ProvenanceCallback(TrainerCallback):
    """Writes the run's provenance (params, git SHA, versions, seed, and the run identity that a
    resume checks) into every checkpoint, after all processes have written theirs: the file is
    the mark of a complete checkpoint. Also counts the epochs this process trained."""

    def __init__(self, provenance: dict):
        self.provenance = provenance
        self.epochs_run = 0

    def on_epoch_end(self, args, state, control, **kwargs):
        self.epochs_run += 1

    def on_save(self, args, state, control, **kwargs):
        distributed.barrier()
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if distributed.is_main() and folder.is_dir():
            write_json(folder / MARKER, self.provenance)


def run_identity(params: dict, train_data: CachedSplit, val_data: CachedSplit, processes: int) -> dict:
    """What a checkpoint must match to be resumed: `params`, the settings that decide this training
    (and its code), the data (rows, sources, labels) and the process count (each process keeps its
    own RNG state)."""
    return {
        "params": params,
        "data": {"train": train_data.fingerprint(), "validation": val_data.fingerprint()},
        "processes": processes,
    }


def complete_checkpoints(out_dir: Path) -> list[Path]:
    """Checkpoints that every process finished writing, oldest first."""
    found = [
        c for c in Path(out_dir).glob("checkpoint-*") if (c / MARKER).is_file() and (c / "trainer_state.json").is_file()
    ]
    return sorted(found, key=lambda c: int(c.name.split("-")[-1]))


def check_same_run(recorded: dict, current: dict, where: str) -> None:
    if not recorded:
        raise ResumeError(
            f"{where} records no run identity (made by an older version); start afresh with resume: fresh"
        )
    changes = changed_keys(recorded.get("params", {}), current["params"])
    changes += [
        f"data '{k}' (rows, images or labels)"
        for k in current["data"]
        if recorded.get("data", {}).get(k) != current["data"][k]
    ]
    if recorded.get("processes") != current["processes"]:
        changes.append(f"processes: {recorded.get('processes')} -> {current['processes']}")
    if changes:
        raise ResumeError(
            f"cannot resume from {where}: it belongs to another run. Changed: {'; '.join(changes)}. "
            "Resume with the settings and data it was made with, or start afresh (resume: fresh)."
        )


def device_cache(setting: str, splits, device) -> bool:
    """Whether the splits' pixels are held on the training device (CachedSplit.on_device): on CUDA
    under the profile's device_cache `setting` "auto", when together they take at most half of the
    device's free memory."""
    device = torch.device(device)
    if setting == "off" or device.type != "cuda":
        return False
    needed = sum(len(split) * int(np.prod(split.pixels.shape[1:])) for split in splits)
    return needed <= torch.cuda.mem_get_info(device)[0] // 2


class StudyTrainer(Trainer):
    """The Trainer, handing the loss the counts of the whole batch of an optimiser step, summed over
    the processes (modeling.loss.global_counts): Task B's masked mean is then one mean over the
    global batch, not a mean of each micro-batch's or process's own. A stage's trainer
    (stage_trainer) also knows the checkpoint train() resumes from and the run it belongs to."""

    resume_point: Path | None = None
    run_identity: dict | None = None
    marker: ProvenanceCallback | None = None

    def train(self, resume_from_checkpoint=None, **kwargs):
        resume_from_checkpoint = resume_from_checkpoint or (str(self.resume_point) if self.resume_point else None)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def __repr__(self) -> str:
        steps = self.args.num_train_epochs * -(-len(self.train_dataset) // self.args.train_batch_size)
        start = f"resumes from {self.resume_point.name}" if self.resume_point else "starts afresh"
        return (
            f"{type(self).__name__}: {len(self.train_dataset):,} training and {len(self.eval_dataset):,} "
            f"validation rows, about {steps:.0f} steps of {self.args.train_batch_size} on {self.args.device}; {start}"
        )

    def _get_num_items_in_batch(self, batch_samples: list, device) -> torch.Tensor | None:
        counts = global_counts(batch_samples, self.model.config.loss_condition)
        if counts is None:
            return None
        counts = counts.to(device)
        return self.accelerator.reduce(counts, reduction="sum") if self.args.world_size > 1 else counts


def make_trainer(
    spec: TrainingSpec,
    model,
    train_data: CachedSplit,
    val_data: CachedSplit,
    args: TrainingArguments,
    callbacks=(),
    compute_metrics=None,
) -> Trainer:
    """The study's Trainer over two cached splits: a frozen text tower's output computed once per
    caption; the pixels on the device when they fit (device_cache: the loader then gathers batches
    there, in this process, and nothing is copied per step); text padded to a few widths under
    torch_compile (a graph per width, not per caption length) and the towers' layers compiled
    (modeling.compiled). compute_metrics: the evaluation's metrics from the Trainer's predictions
    (the caller's: evaluation.metrics.compute_metrics_for), needed where the best epoch is kept."""
    if model.config.freeze_text and model.config.modality != "image":
        model.to(args.device)  # the frozen tower's features computed where it trains, not on the CPU first
        train_data, val_data = (
            with_text_features(split, model, spec.eval_batch_size) for split in (train_data, val_data)
        )
    if device_cache(spec.device_cache, (train_data, val_data), args.device):
        train_data, val_data = (split.on_device(args.device) for split in (train_data, val_data))
        args.dataloader_num_workers, args.dataloader_pin_memory, args.dataloader_persistent_workers = 0, False, False
    # The precision this training really runs in (the profile's bf16 is autocast on CUDA only), saved
    # with the model so that every scorer scores it as this Trainer evaluates it.
    model.config.bf16 = bool(args.bf16)
    widths = ()
    if spec.torch_compile:  # the study's regional compilation, not the Trainer's whole-model one
        compile_repeated_blocks(model)
        widths = length_buckets(model.config.max_caption_length)
    trainer = StudyTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=val_data,
        data_collator=functools.partial(collate, widths=widths),
        compute_metrics=compute_metrics,
        callbacks=list(callbacks),
    )
    return trainer


def stage_trainer(
    spec: TrainingSpec,
    model,
    train_data: CachedSplit,
    val_data: CachedSplit,
    args: TrainingArguments,
    compute_metrics,
    params: dict,
    provenance: dict | None = None,
    resume: bool = False,
) -> StudyTrainer:
    """The Trainer of one stage, ready to train() (make_trainer's, with args.output_dir for its
    checkpoints). resume=True: train() continues from the newest complete checkpoint of the same
    run (one of another run is refused); otherwise stale checkpoints of an earlier run are removed
    first. Every checkpoint carries `provenance` and the run identity (run_identity of `params`)."""
    out_dir = Path(args.output_dir)
    current = run_identity(params, train_data, val_data, distributed.world_size())
    checkpoint = None
    if resume and complete_checkpoints(out_dir):
        checkpoint = complete_checkpoints(out_dir)[-1]
        check_same_run(json.loads((checkpoint / MARKER).read_text()).get("run_identity"), current, str(checkpoint))
        print(f"resuming from {checkpoint}")
    elif distributed.is_main():
        shutil.rmtree(out_dir, ignore_errors=True)
    distributed.barrier()
    marker = ProvenanceCallback({**(provenance or {}), "run_identity": current})
    trainer = make_trainer(spec, model, train_data, val_data, args, [marker], compute_metrics)
    trainer.resume_point, trainer.run_identity, trainer.marker = checkpoint, current, marker
    return trainer


def training_run(trainer: StudyTrainer) -> TrainingRun:
    """What a stage's trainer did, once train() returned."""
    return TrainingRun(
        history=pd.DataFrame(trainer.state.log_history),
        best_checkpoint=trainer.state.best_model_checkpoint,
        best_metric=trainer.state.best_metric,
        epochs_run=trainer.marker.epochs_run,
        resumed_from=trainer.resume_point.name if trainer.resume_point else None,
        run_identity=trainer.run_identity,
    )


def train(
    spec: TrainingSpec,
    model,
    train_data: CachedSplit,
    val_data: CachedSplit,
    out_dir: str | Path,
    compute_metrics,
    params: dict,
    provenance: dict | None = None,
    resume: bool = False,
) -> tuple[object, TrainingRun]:
    """Train in place (stage_trainer's trainer, arguments from the spec); returns the model with
    the best epoch's weights and the TrainingRun. compute_metrics: what each epoch's evaluation
    reports (evaluation.metrics.compute_metrics_for), the best epoch chosen by the spec's
    metric_for_best among them. params: the settings and code that decide this training, which a
    resume checks. Checkpoints stay under out_dir (the latest, plus the best while it differs)."""
    args = training_arguments(spec, Path(out_dir), distributed.world_size())
    trainer = stage_trainer(spec, model, train_data, val_data, args, compute_metrics, params, provenance, resume)
    trainer.train()
    return trainer.model, training_run(trainer)


def learning_curves(history: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training loss per logging step, validation metrics per epoch)."""
    train_rows = history[history.get("loss").notna()] if "loss" in history else history.iloc[:0]
    eval_rows = history[history.get("eval_loss").notna()] if "eval_loss" in history else history.iloc[:0]
    eval_cols = [c for c in eval_rows.columns if c.startswith("eval_") and not c.endswith(("runtime", "per_second"))]
    return train_rows[["epoch", "step", "loss"]].reset_index(drop=True), eval_rows[["epoch", *eval_cols]].reset_index(
        drop=True
    )
