"""The Trainer's arguments from a training spec: the paper's schedule (evaluate and save every epoch,
keep the best by the profile's metric), the global batch over the processes, precision, and the
settings that keep a step free of host reads."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import TrainingArguments

from helpers.training import distributed, precision
from helpers.training.spec import TrainingSpec


def training_arguments(spec: TrainingSpec, out_dir: Path, processes: int = 1) -> TrainingArguments:
    """batch_size is global: split over the processes, with gradient accumulation past
    per_device_max_batch. Warmup and logging are given as shares of the total optimizer steps,
    which the Trainer counts in global steps, so they do not change with the process count.
    Precision follows the spec (precision.build_arguments); one process uses one device."""
    cuda = torch.cuda.is_available()
    per_device, accumulation = distributed.batch_plan(spec.batch_size, processes, spec.per_device_max_batch)
    args = precision.build_arguments(
        spec.bf16,
        spec.tf32,
        lambda: TrainingArguments(
            output_dir=str(out_dir),
            learning_rate=spec.learning_rate,
            weight_decay=spec.weight_decay,
            per_device_train_batch_size=per_device,
            gradient_accumulation_steps=accumulation,
            per_device_eval_batch_size=max(1, spec.eval_batch_size // processes),
            num_train_epochs=spec.epochs,
            # A float below 1 is a share of the steps (transformers >= 5, the floor in pyproject.toml).
            warmup_steps=min(spec.warmup_ratio, 0.999),
            eval_strategy="epoch",
            save_strategy="epoch",
            save_total_limit=1,
            load_best_model_at_end=True,
            metric_for_best_model=spec.metric_for_best,
            greater_is_better=True,
            logging_strategy="steps",
            logging_steps=1 / (4 * spec.epochs),
            # The filter reads every step's loss on the host (bool(isnan(loss))), a sync that stops the
            # host from queueing the next step while the GPU runs this one; a NaN loss is logged as NaN.
            logging_nan_inf_filter=False,
            # The loss is divided by the whole batch's counts (StudyTrainer), so each process's part is
            # scaled by the process count before DDP averages the gradients.
            average_tokens_across_devices=True,
            label_names=["label_a", "label_b"],
            remove_unused_columns=False,
            bf16=precision.bf16_autocast(spec.bf16),
            # The fused kernel on CPU too (torch >= 2.4): the per-tensor loop took 5 ms of the demo's
            # 100 ms step, the fused one well under 1.
            optim="adamw_torch_fused",
            dataloader_num_workers=spec.num_workers,
            dataloader_persistent_workers=spec.num_workers > 0,
            dataloader_pin_memory=cuda,
            # Pinned batches are copied to the device without blocking the host.
            accelerator_config={"non_blocking": cuda},
            # DDP must look for parameters without gradients only when some exist: a tower switched
            # off by the modality ablation, or BERT's pooler when another pooling is used.
            ddp_find_unused_parameters=spec.modality != "both" or spec.text_pooling != "pooler",
            ddp_timeout=spec.ddp_timeout,
            seed=spec.seed,
            data_seed=spec.seed,
            report_to=spec.report_to,
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
            f"batch. To use all {args.n_gpu}, set processes: {args.n_gpu} (the study's engine starts "
            f"torchrun) or launch with torchrun --nproc_per_node {args.n_gpu}.",
            flush=True,
        )
        # The attribute the Trainer itself sets to 1 to keep DataParallel out (model parallelism).
        args._n_gpu = 1
    return args
