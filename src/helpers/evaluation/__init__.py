"""Stage 5, scores: metrics, the saved models on the labelled splits (scorecard), calibration,
perturbations, the metadata audit and outside sets."""
