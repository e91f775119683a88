"""The index rule's job: this run's report from the records of the rules in its graph (report.py),
the resolved profile beside it, and each saved model's card rewritten with the conclusions about it."""

from pathlib import Path

from report import merged, span, stage, write_index

from helpers.config import load_config
from helpers.files import write_json
from helpers.profiles import write_resolved
from study.provenance import provenance
from study.saved import refresh_cards

snakemake = globals()["snakemake"]  # set by Snakemake's script directive
profile = str(Path(snakemake.config["profile"]).resolve())
overrides = {k: v for k, v in snakemake.config.items() if k != "profile"}
cfg = load_config(profile, overrides)
out_dir = Path(snakemake.output.index).parent
stages = [stage(executed) for executed in snakemake.input.notebooks]
by_notebook = {s["notebook"]: s for s in stages}
metrics = merged(
    snakemake.input.records,
    {record: by_notebook[notebook] for record, notebook in snakemake.params.written_by.items()},
)
record = {**provenance(cfg), "profile_file": profile, "overrides": overrides, "stages": stages, **span(stages)}
write_json(snakemake.output.metrics, metrics)
write_json(snakemake.output.provenance, record)
write_resolved(cfg, Path(snakemake.output.profile))
refresh_cards(cfg, metrics)
write_index(out_dir, record, metrics)
