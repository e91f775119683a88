"""How far to trust the numbers, and what would do better: the steps the analysis notebooks
(05-13) repeat. common: the context an analysis starts from, short trainings with the analyses'
budget, scoring, and the record in metrics.json; one module per notebook for what it alone does
(robustness 06, unseen_generators 08, seeds 10, baselines 12, beyond 13); conclusions: the
wording of every analysis's conclusion, written from the numbers."""
