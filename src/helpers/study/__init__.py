"""The notebooks' steps: set-up and training stages (stages), the pseudo-label round, the analyses
and their conclusions, exploration, figures, the report, provenance, the fidelity table, and the
run's record files (records)."""
