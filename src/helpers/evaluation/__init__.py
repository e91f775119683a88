"""Stage 5, scores: metrics, calibration, perturbations, the metadata audit, probes, thresholds
and outside sets; functions of predictions and labels that return values."""
