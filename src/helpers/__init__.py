"""Shared logic of the CT2 detector study: data, model, loss, training, pseudo-labels, metrics, plots, runner."""
