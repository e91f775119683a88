"""The dual encoder (detector) and its conditional two-task loss (loss)."""
