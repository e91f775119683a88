"""How far to trust the numbers, and what would do better: one module per analysis notebook, each with
run(namespace) returning a study.results.Result (tables, figures, a conclusion generated from the
numbers): shortcut_audit (05), robustness (06), modality_ablation (07), unseen_generators (08),
reliability (09), seeds (10), baselines (12), beyond (13, the paper's future work); shared steps
(common) and the conclusions' wording (conclusions)."""
