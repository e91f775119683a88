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
from helpers.identity import changed_keys, training_identity
from helpers.modeling.compiled import compile_repeated_blocks
from helpers.modeling.loss import global_counts
from helpers.training import distributed, precision

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


def training_arguments(cfg, out_dir: Path, processes: int = 1) -> TrainingArguments:
    """batch_size is global: split over the processes, with gradient accumulation past
    per_device_max_batch. Warmup and logging are given as shares of the total optimizer steps,
    which the Trainer counts in global steps, so they do not change with the process count.
    Precision follows the profile (precision.build_arguments); one process uses one device."""
    cuda = torch.cuda.is_available()
    per_device, accumulation = distributed.batch_plan(cfg.batch_size, processes, cfg.per_device_max_batch)
    args = precision.build_arguments(
        cfg,
        lambda: TrainingArguments(
            output_dir=str(out_dir),
            learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            per_device_train_batch_size=per_device,
            gradient_accumulation_steps=accumulation,
            per_device_eval_batch_size=max(1, cfg.eval_batch_size // processes),
            num_train_epochs=cfg.epochs,
            # A float below 1 is a share of the steps (transformers >= 5, the floor in pyproject.toml).
            warmup_steps=min(cfg.warmup_ratio, 0.999),
            eval_strategy="epoch",
            save_strategy="epoch",
            save_total_limit=1,
            load_best_model_at_end=True,
            metric_for_best_model=cfg.metric_for_best,
            greater_is_better=True,
            logging_strategy="steps",
            logging_steps=1 / (4 * cfg.epochs),
            # The filter reads every step's loss on the host (bool(isnan(loss))), a sync that stops the
            # host from queueing the next step while the GPU runs this one; a NaN loss is logged as NaN.
            logging_nan_inf_filter=False,
            # The loss is divided by the whole batch's counts (StudyTrainer), so each process's part is
            # scaled by the process count before DDP averages the gradients.
            average_tokens_across_devices=True,
            label_names=["label_a", "label_b"],
            remove_unused_columns=False,
            bf16=precision.bf16_autocast(cfg),
            # The fused kernel on CPU too (torch >= 2.4): the per-tensor loop took 5 ms of the demo's
            # 100 ms step, the fused one well under 1.
            optim="adamw_torch_fused",
            dataloader_num_workers=cfg.num_workers,
            dataloader_persistent_workers=cfg.num_workers > 0,
            dataloader_pin_memory=cuda,
            # Pinned batches are copied to the device without blocking the host.
            accelerator_config={"non_blocking": cuda},
            # DDP must look for parameters without gradients only when some exist: a tower switched
            # off by the modality ablation, or BERT's pooler when another pooling is used.
            ddp_find_unused_parameters=cfg.modality != "both" or cfg.text_pooling != "pooler",
            ddp_timeout=cfg.ddp_timeout,
            seed=cfg.seed,
            data_seed=cfg.seed,
            report_to=cfg.report_to,
            use_cpu=not cuda,
        ),
    )
    return one_device_per_process(args)


def one_device_per_process(args: TrainingArguments) -> TrainingArguments:
    """One process never trains on several GPUs: the Trainer would wrap the model in DataParallel
    and multiply the batch by the GPU count. Several GPUs are used through several processes."""
    if args.n_gpu > 1 and not distributed.launched():
        print(
            f"{args.n_gpu} GPUs are visible to one process: training on {args.device} only, with the profile's "
            f"batch. To use all {args.n_gpu}, set processes: {args.n_gpu} (the notebooks and helpers.train start "
            f"torchrun) or launch with torchrun --nproc_per_node {args.n_gpu}.",
            flush=True,
        )
        # The attribute the Trainer itself sets to 1 to keep DataParallel out (model parallelism).
        args._n_gpu = 1
    return args


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


def run_identity(cfg, train_data: CachedSplit, val_data: CachedSplit, processes: int, stage: str = "before") -> dict:
    """What a checkpoint must match to be resumed: the settings that decide this stage's training
    (config.training_identity), the data (rows, sources, labels) and the process count (each
    process keeps its own RNG state)."""
    return {
        "params": training_identity(cfg, stage),
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


def device_cache(cfg, splits, device) -> bool:
    """Whether the splits' pixels are held on the training device (CachedSplit.on_device): on CUDA
    under device_cache: auto, when together they take at most half of the device's free memory."""
    device = torch.device(device)
    if cfg.device_cache == "off" or device.type != "cuda":
        return False
    needed = sum(len(split) * int(np.prod(split.pixels.shape[1:])) for split in splits)
    return needed <= torch.cuda.mem_get_info(device)[0] // 2


class StudyTrainer(Trainer):
    """The Trainer, handing the loss the counts of the whole batch of an optimiser step, summed over
    the processes (modeling.loss.global_counts): Task B's masked mean is then one mean over the
    global batch, not a mean of each micro-batch's or process's own."""

    def _get_num_items_in_batch(self, batch_samples: list, device) -> torch.Tensor | None:
        counts = global_counts(batch_samples, self.model.config.loss_condition)
        if counts is None:
            return None
        counts = counts.to(device)
        return self.accelerator.reduce(counts, reduction="sum") if self.args.world_size > 1 else counts


def make_trainer(
    cfg,
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
            with_text_features(split, model, cfg.eval_batch_size) for split in (train_data, val_data)
        )
    if device_cache(cfg, (train_data, val_data), args.device):
        train_data, val_data = (split.on_device(args.device) for split in (train_data, val_data))
        args.dataloader_num_workers, args.dataloader_pin_memory, args.dataloader_persistent_workers = 0, False, False
    widths = ()
    if cfg.torch_compile:  # the study's regional compilation, not the Trainer's whole-model one
        compile_repeated_blocks(model)
        widths = length_buckets(cfg.max_caption_length)
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


def train(
    cfg,
    model,
    train_data: CachedSplit,
    val_data: CachedSplit,
    out_dir: str | Path,
    compute_metrics,
    provenance: dict | None = None,
    resume: bool = False,
    stage: str = "before",
) -> tuple[object, TrainingRun]:
    """Train in place; returns the model with the best epoch's weights and the TrainingRun.
    compute_metrics: what each epoch's evaluation reports (evaluation.metrics.compute_metrics_for),
    the best epoch chosen by the profile's metric_for_best among them.
    Checkpoints stay under out_dir (the latest, plus the best while it differs). resume=True
    continues from the newest complete checkpoint of the same run; otherwise stale checkpoints
    of an earlier run are removed first."""
    out_dir = Path(out_dir)
    processes = distributed.world_size()
    current = run_identity(cfg, train_data, val_data, processes, stage)
    checkpoint = None
    if resume and complete_checkpoints(out_dir):
        checkpoint = complete_checkpoints(out_dir)[-1]
        check_same_run(json.loads((checkpoint / MARKER).read_text()).get("run_identity"), current, str(checkpoint))
        print(f"resuming from {checkpoint}")
    elif distributed.is_main():
        shutil.rmtree(out_dir, ignore_errors=True)
    distributed.barrier()
    marker = ProvenanceCallback({**(provenance or {}), "run_identity": current})
    args = training_arguments(cfg, out_dir, processes)
    trainer = make_trainer(cfg, model, train_data, val_data, args, [marker], compute_metrics)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    run = TrainingRun(
        history=pd.DataFrame(trainer.state.log_history),
        best_checkpoint=trainer.state.best_model_checkpoint,
        best_metric=trainer.state.best_metric,
        epochs_run=marker.epochs_run,
        resumed_from=checkpoint.name if checkpoint else None,
        run_identity=current,
    )
    return trainer.model, run


def learning_curves(history: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training loss per logging step, validation metrics per epoch)."""
    train_rows = history[history.get("loss").notna()] if "loss" in history else history.iloc[:0]
    eval_rows = history[history.get("eval_loss").notna()] if "eval_loss" in history else history.iloc[:0]
    eval_cols = [c for c in eval_rows.columns if c.startswith("eval_") and not c.endswith(("runtime", "per_second"))]
    return train_rows[["epoch", "step", "loss"]].reset_index(drop=True), eval_rows[["epoch", *eval_cols]].reset_index(
        drop=True
    )
