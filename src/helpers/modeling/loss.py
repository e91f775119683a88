"""The multi-task loss: BCE on Task A plus cross-entropy on Task B over AI rows only."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def detector_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, label_a: torch.Tensor, label_b: torch.Tensor,
                  condition: str = "label") -> torch.Tensor:
    """Sum of the two task losses.

    condition="label" (the paper): Task B's cross-entropy averages over rows whose true
    Label_A is 1. condition="pred": over rows that head A currently calls AI (logit > 0),
    the rows whose Task B answer inference will use; a real photo among them is taught
    class 0. A batch with no such row adds zero to the loss, never NaN.
    """
    loss_a = F.binary_cross_entropy_with_logits(logits_a.float(), label_a.float())
    if condition == "label":
        mask = label_a == 1
    elif condition == "pred":
        mask = logits_a.detach() > 0
    else:
        raise ValueError(f"condition must be 'label' or 'pred', got {condition!r}")
    per_row = F.cross_entropy(logits_b.float(), label_b.clamp(min=0), reduction="none")
    # Masked mean without indexing: no host sync, and zero (not NaN) when the mask is empty.
    weight = mask.float()
    loss_b = (per_row * weight).sum() / weight.sum().clamp(min=1.0)
    return loss_a + loss_b
