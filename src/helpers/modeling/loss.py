"""The multi-task loss: BCE on Task A plus cross-entropy on Task B over AI rows only."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def detector_loss(
    logits_a: torch.Tensor,
    logits_b: torch.Tensor,
    label_a: torch.Tensor,
    label_b: torch.Tensor,
    condition: str = "label",
    counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum of the two task losses.

    condition="label" (the paper): Task B's cross-entropy averages over rows whose true
    Label_A is 1. condition="pred": over rows that head A currently calls AI (logit > 0),
    the rows whose Task B answer inference will use; a real photo among them is taught
    class 0. A batch with no such row adds zero to the loss, never NaN.

    counts: (rows, Task B rows) of the whole batch this one is a part of (gradient accumulation,
    several processes: global_counts): each task's sum here is divided by the whole batch's count,
    so the parts add up to one mean over the whole batch, as the paper's loss is. None: this
    batch is the whole batch.
    """
    loss_a = F.binary_cross_entropy_with_logits(logits_a.float(), label_a.float(), reduction="none")
    if condition == "label":
        mask = label_a == 1
    elif condition == "pred":
        mask = logits_a.detach() > 0
    else:
        raise ValueError(f"condition must be 'label' or 'pred', got {condition!r}")
    per_row = F.cross_entropy(logits_b.float(), label_b.clamp(min=0), reduction="none")
    # Masked mean without indexing: no host sync, and zero (not NaN) when the mask is empty.
    weight = mask.float()
    rows, task_b_rows = (loss_a.new_tensor(len(loss_a)), weight.sum()) if counts is None else counts.float()
    return loss_a.sum() / rows.clamp(min=1.0) + (per_row * weight).sum() / task_b_rows.clamp(min=1.0)


def global_counts(parts: list[dict], condition: str = "label") -> torch.Tensor | None:
    """(rows, Task B rows) over the micro-batches of one optimiser step (this process's share;
    the Trainer sums them over processes). Under condition "pred" Task B's rows depend on the
    model's answers, unknown before the forward: None (each part keeps its own mean)."""
    if condition != "label" or not parts or "label_a" not in parts[0]:
        return None
    task_b_rows = sum((p["label_a"] == 1).sum() for p in parts).float()
    return torch.stack([task_b_rows.new_tensor(float(sum(len(p["label_a"]) for p in parts))), task_b_rows])
