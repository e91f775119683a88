"""How far to trust the numbers, and what would do better: the computations the analysis notebooks
(05-13) repeat. common: scoring a cached split, under image transforms too; one module per notebook
for what it alone does (robustness 06, unseen_generators 08, seeds 10, baselines 12, beyond 13),
and verdicts, the tests that decide notebook 13's findings."""
