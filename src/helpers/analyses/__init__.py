"""How far to trust the numbers: one module per analysis notebook (05-10), each with run(namespace)
returning a study.results.Result (tables, figures, a conclusion generated from the numbers):
shortcut_audit, robustness, modality_ablation, unseen_generators, reliability, seeds; shared steps
(common) and the conclusions' wording (conclusions)."""
