"""The CT2 detector study, by stage: data/ → cache/ → modeling/ + training/ → inference/ →
evaluation/, orchestrated by study/ (what the notebooks call); config (the typed profile),
labels (the six classes), and the commands run, train and predict (python -m helpers.<command>)."""
