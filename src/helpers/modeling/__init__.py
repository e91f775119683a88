"""The dual encoder (detector), how its towers are fused (fusion: concat or attention), its
conditional two-task loss (loss), building it from a profile (building), saving and loading
(checkpoints) and its model card (card)."""
