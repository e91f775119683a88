"""The study's stages as notebooks/stages.yaml declares them: what each notebook reads, runs after,
trains and what switches it off. The runner, staleness and resume, the index and the records read
this table; no notebook number is spelled anywhere else in the package."""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path

import pydantic
import yaml

from helpers.profiles import SECTION_OF, SECTIONS, section_values

# The repository's table. A run started in another project root reads that root's (helpers.run),
# and names it to the kernels it starts in this variable, so that what a notebook reads of the table
# (a model's training identity, a record's title) is the run's table too.
DEFAULT = Path(__file__).resolve().parents[2] / "notebooks" / "stages.yaml"
TABLE_VARIABLE = "CT2_STAGE_TABLE"


class StageTableError(ValueError):
    """A table that does not describe the notebooks beside it."""


@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(strict=True, extra="forbid"))
class Stage:
    notebook: str
    title: str
    reads: tuple[str, ...]
    after: tuple[str, ...] = ()
    trains: str = ""
    torchrun: bool = False
    analysis: str = ""
    on_when: str = ""
    records: str = ""
    trainings: int = 0
    trainings_per_seed: int = 0

    def identity(self, cfg) -> dict:
        """The seed and the keys of the sections this stage reads (cfg: a Config or its to_dict())."""
        return section_values(cfg, self.reads)

    def digest(self, cfg) -> str:
        return digest(self.identity(cfg))

    def switched_off(self, cfg) -> str | None:
        """Why the profile switches this stage off, or None."""
        if self.analysis and self.analysis not in cfg.analyses:
            return f"the '{self.analysis}' analysis is off (analyses: {list(cfg.analyses)})"
        if self.on_when and not getattr(cfg, self.on_when):
            return f"switched off by {self.on_when}: {getattr(cfg, self.on_when)!r}"
        return None

    def trainings_under(self, cfg) -> int:
        return self.trainings + self.trainings_per_seed * len(cfg.seeds)

    @property
    def html(self) -> str:
        return f"{self.notebook}.html"


def digest(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StageTable:
    """The stages in table order, looked up by notebook, by the model they train, or by the record they write."""

    def __init__(self, stages: list[Stage], path: Path):
        self.stages, self.path = stages, path
        self.by_notebook = {s.notebook: s for s in stages}

    def __getitem__(self, notebook: str) -> Stage:
        if notebook not in self.by_notebook:
            raise StageTableError(f"notebook {notebook} has no entry in {self.path}: add one (its title, reads, after)")
        return self.by_notebook[notebook]

    def trained_by(self, model: str) -> Stage:
        found = [s for s in self.stages if s.trains == model]
        if not found:
            raise StageTableError(f"no stage of {self.path} trains the '{model}' model")
        return found[0]

    def recorded_by(self, name: str) -> Stage:
        """The stage whose record in metrics.json is `name` (an analysis or its `records`)."""
        found = [s for s in self.stages if name in (s.analysis, s.records)]
        if not found:
            raise StageTableError(f"no stage of {self.path} records '{name}': give its entry `records: {name}`")
        return found[0]

    @property
    def analyses(self) -> tuple[str, ...]:
        return tuple(s.analysis for s in self.stages if s.analysis)

    def runs_in_order(self, stage: Stage) -> bool:
        """A stage that another one runs after runs in order; the others side by side."""
        return any(stage.notebook in s.after for s in self.stages)

    def to_run(self, folder: Path, only: list[str] | None = None) -> list[Stage]:
        """The stages in table order (those whose notebooks' names start with `only`'s entries), once
        the folder's notebooks are checked against it: a notebook without an entry, or an entry
        without its notebook, is an error."""
        found = {p.stem: p for p in folder.glob("[0-9][0-9]_*.ipynb")}
        if missing := sorted(set(found) - set(self.by_notebook)):
            raise StageTableError(f"notebook(s) {missing} in {folder} have no entry in {self.path}: add one each")
        if absent := [s.notebook for s in self.stages if s.notebook not in found]:
            raise StageTableError(f"{self.path} lists {absent}, which {folder} does not hold")
        chosen = [s for s in self.stages if not only or any(s.notebook.startswith(o) for o in only)]
        if not chosen:
            raise FileNotFoundError(f"no notebooks to run in {folder}" + (f" matching {only}" if only else ""))
        return chosen


def _checked(stages: list[Stage], path: Path) -> None:
    seen: set[str] = set()
    for stage in stages:
        problems = [
            f"reads an unknown section '{r}' (sections: {list(SECTIONS)})" for r in stage.reads if r not in SECTIONS
        ]
        problems += [f"runs after '{a}', which is not an earlier stage" for a in stage.after if a not in seen]
        if stage.on_when and stage.on_when not in SECTION_OF:
            problems.append(f"is switched by '{stage.on_when}', which is not a profile key")
        if stage.trains not in ("", "before", "after"):
            problems.append(f"trains '{stage.trains}': a stage trains 'before' or 'after'")
        if problems:
            raise StageTableError(f"{path}: stage {stage.notebook} " + "; ".join(problems))
        seen.add(stage.notebook)
    for model in ("before", "after"):
        if sum(s.trains == model for s in stages) > 1:
            raise StageTableError(f"{path}: two stages train the '{model}' model; one may")


def load_table(path: Path | None = None) -> StageTable:
    """The table at `path`; by default the one the runner named to this process (TABLE_VARIABLE),
    else the repository's."""
    return read_table(Path(path or os.environ.get(TABLE_VARIABLE) or DEFAULT))


@cache
def read_table(path: Path) -> StageTable:
    """The table at `path`, every entry checked (unknown fields, sections, order) before any work starts."""
    entries = yaml.safe_load(Path(path).read_text()) or {}
    stages = []
    for notebook, entry in entries.items():
        try:
            stages.append(
                Stage(
                    notebook=notebook,
                    **{k: tuple(v) if isinstance(v, list) else v for k, v in (entry or {}).items()},
                )
            )
        except (pydantic.ValidationError, TypeError) as error:
            raise StageTableError(f"{path}: stage {notebook}: {error}") from None
    _checked(stages, Path(path))
    return StageTable(stages, Path(path))
