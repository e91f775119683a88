"""The study the notebooks tell, over the science in `helpers`: a notebook's start (setup), the
training stages and their caches (stages), the pseudo-label round, the saved models read back and
scored (saved, scorecard), the analyses' context and record (analysis), the models they compare
(variants, the engine's training jobs too), the wording of conclusions and sentences written from
the profile (conclusions, narrative), exploration, figures (plots), provenance and the run's record
files (records); and the train command (ct2-train), one stage of one run. It reads the profile
whole; `helpers` functions take what they use."""
