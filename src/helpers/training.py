"""Training with the Hugging Face Trainer, as in the paper: evaluate every epoch, keep the
best epoch by a Task-A metric, load it at the end, keep one checkpoint on disk."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import EvalPrediction, Trainer, TrainerCallback, TrainingArguments, set_seed

from .cache import CachedSplit, collate, with_text_features
from .inference import decode
from .metrics import all_metrics


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    logits_a, logits_b = prediction.predictions
    label_a, label_b = prediction.label_ids
    prob_ai = 1.0 / (1.0 + np.exp(-np.asarray(logits_a, np.float64)))
    logits_b = np.asarray(logits_b, np.float64)
    probs_b = np.exp(logits_b - logits_b.max(1, keepdims=True))
    decoded = decode(prob_ai, probs_b / probs_b.sum(1, keepdims=True))
    return all_metrics(label_a, label_b, decoded.label_a, decoded.label_b)


def training_arguments(cfg, out_dir: Path, steps_per_epoch: int) -> TrainingArguments:
    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(out_dir),
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        num_train_epochs=cfg.epochs,
        warmup_steps=math.ceil(cfg.warmup_ratio * steps_per_epoch * cfg.epochs),
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        save_only_model=True,
        load_best_model_at_end=True,
        metric_for_best_model=cfg.metric_for_best,
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=max(1, steps_per_epoch // 4),
        label_names=["label_a", "label_b"],
        remove_unused_columns=False,
        bf16=cuda and cfg.bf16,
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        torch_compile=cfg.torch_compile,
        dataloader_num_workers=cfg.num_workers,
        dataloader_pin_memory=cuda,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        use_cpu=not cuda,
    )


class ProvenanceCallback(TrainerCallback):
    """Writes the run's provenance (params, git SHA, versions, seed) into every checkpoint."""

    def __init__(self, provenance: dict):
        self.provenance = provenance

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            (folder / "provenance.json").write_text(json.dumps(self.provenance, indent=2, default=str))


def train(cfg, model, train_data: CachedSplit, val_data: CachedSplit, out_dir: str | Path,
          provenance: dict | None = None) -> tuple[object, pd.DataFrame]:
    """Train in place; returns the model with the best epoch's weights and the log history.
    Checkpoints stay under out_dir (the latest, plus the best while it differs)."""
    set_seed(cfg.seed)
    out_dir = Path(out_dir)
    if model.config.freeze_text and model.config.modality != "image":
        train_data, val_data = (with_text_features(split, model, cfg.eval_batch_size) for split in (train_data, val_data))
    steps_per_epoch = math.ceil(len(train_data) / cfg.batch_size)
    trainer = Trainer(model=model, args=training_arguments(cfg, out_dir, steps_per_epoch), train_dataset=train_data,
                      eval_dataset=val_data, data_collator=collate, compute_metrics=compute_metrics,
                      callbacks=[ProvenanceCallback(provenance or {})])
    trainer.train()
    history = pd.DataFrame(trainer.state.log_history)
    history.attrs["best_checkpoint"] = trainer.state.best_model_checkpoint
    history.attrs["best_metric"] = trainer.state.best_metric
    return trainer.model, history


def learning_curves(history: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training loss per logging step, validation metrics per epoch)."""
    train_rows = history[history.get("loss").notna()] if "loss" in history else history.iloc[:0]
    eval_rows = history[history.get("eval_loss").notna()] if "eval_loss" in history else history.iloc[:0]
    eval_cols = [c for c in eval_rows.columns if c.startswith("eval_") and not c.endswith(("runtime", "per_second"))]
    return train_rows[["epoch", "step", "loss"]].reset_index(drop=True), eval_rows[["epoch", *eval_cols]].reset_index(drop=True)
