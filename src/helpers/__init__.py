"""The CT2 detector's science, by stage: data/ → cache/ → modeling/ + training/ → inference/ →
evaluation/ and analyses/ (the analyses' computations); config (the typed profile), labels (the six
classes), prediction and the predict command (ct2-predict). The study that runs it, notebook by
notebook, is the `study` package beside it; this one imports nothing of it."""
