"""What the core notebooks reuse: a notebook's start (setup), the training stages and their caches
(stages), the saved models' scores (scorecard), the pseudo-label round, exploration, the sentences written from the profile (narrative),
figures (plots), provenance, the run's record files (records) and the report's index (report)."""
