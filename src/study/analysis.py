"""What an analysis notebook (05-13) starts from and ends with: the context (the final model, the
caches it needs, the split it scores) and the record of its conclusion for the report."""

from __future__ import annotations

from dataclasses import dataclass, field

from helpers.analyses.common import viewed_rows
from helpers.cache.dataset import CachedSplit
from study import saved, setup, stages
from study.records import write_record
from study.saved import final_stage
from study.setup import study_splits


@dataclass
class Context:
    """What an analysis starts from: the study's splits, the final model, the caches of the splits
    it needs and the evaluation split (all of it, and the rows scored under perturbations)."""

    cfg: object
    splits: object
    model: object
    tokenizer: object
    stage: str
    size: int
    split_name: str
    caches: dict = field(default_factory=dict)
    evaluated: CachedSplit | None = None
    viewed: CachedSplit | None = None  # the rows scored under perturbations (view_captions)

    def __repr__(self) -> str:
        return (
            f"Context(final model: {self.stage} pseudo-labels, {self.size} px; scored on the {self.split_name} "
            f"split: {len(self.evaluated)} images, {len(self.viewed)} of them under perturbations; caches: "
            f"{', '.join(f'{n} {len(c)}' for n, c in self.caches.items())})"
        )


def prepare(cfg, name: str, cache_names=()) -> Context:
    """The final model (notebooks 02-03 must have saved it for this run's settings) and the caches
    of cache_names (names, or a function of the study's splits giving them) plus the evaluation
    split. Stops when `name` is not in the profile's analyses."""
    setup.require(name in cfg.analyses, f"the '{name}' analysis", f"analyses: {list(cfg.analyses)}")
    splits = study_splits(cfg)
    model, tokenizer, stage = saved.final_model(cfg)
    size = model.config.image_size
    split_name = stages.evaluation_split(splits)
    names = cache_names(splits) if callable(cache_names) else cache_names
    caches = stages.caches_for(cfg, splits, tokenizer, size, [*names, split_name])
    evaluated = caches[split_name]
    return Context(
        cfg,
        splits,
        model,
        tokenizer,
        stage,
        size,
        split_name,
        caches,
        evaluated,
        viewed_rows(splits[split_name], evaluated, cfg.view_captions, cfg.seed),
    )


def model_read(cfg, reads: str | None = None) -> str:
    """The sentence that says which model an analysis reads: `reads`, or the study's final model;
    a model trained on pseudo-labels from a pool that may hold the scored images says so."""
    if reads is not None:
        return f"Model read: {reads}."
    stage = final_stage(cfg)
    text = f"Model read: the study's final model ({stage} pseudo-labels)."
    if stage == "after" and cfg.pool_overlap == "keep":
        text += (
            " Its pseudo-label pool may hold the scored images themselves (pool_overlap: keep, the authors' "
            "transductive setup): it has seen them in training, unlabelled."
        )
    return text


def record(cfg, name: str, conclusion: str, numbers: dict, figures=(), reads: str | None = None) -> str:
    """The analysis's conclusion (ending with which model it reads, model_read), figures and numbers
    in its record, reports/<profile>/records/<name>.json, where the index page finds them; returns
    the conclusion for the notebook to show. reads: the models the analysis scored when they are not
    the study's final model (those it trained itself, say); None: the final model, and then its
    record names that model's stage, whose card alone carries the conclusion."""
    conclusion = f"{conclusion} {model_read(cfg, reads)}"
    entry = {
        "conclusion": conclusion,
        "figures": [f"figures/{f}.png" for f in figures],
        "numbers": numbers,
        "model": final_stage(cfg) if reads is None else None,
    }
    write_record(cfg, name, {"analyses": {name: entry}})
    return conclusion
