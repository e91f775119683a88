"""A notebook's start: the project root, the profile with its overrides, seeds, the process
settings (timeout, TF32), and where the run's files go."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from helpers.config import Config, load_config
from helpers.data.splits import load_splits
from helpers.evaluation import outside
from helpers.training import distributed, precision
from study.records import record


def project_root(start: Path | None = None) -> Path:
    """The folder holding pyproject.toml, so notebooks run the same from notebooks/ or the root."""
    here = (start or Path.cwd()).resolve()
    # Then the checkout this package was installed from (editable install), wherever the kernel starts.
    for folder in (here, *here.parents, Path(__file__).resolve().parents[2]):
        if (folder / "pyproject.toml").is_file() and (folder / "src" / "helpers").is_dir():
            return folder
    raise FileNotFoundError(f"no project root (pyproject.toml with src/helpers) above {here}")


def profile_path(profile: str | Path, root: Path) -> Path:
    """A profile name (demo) means params/<name>.yaml of the project; anything else is a path."""
    path = Path(profile)
    return path if path.suffix in (".yaml", ".yml") else root / "params" / f"{profile}.yaml"


def load(profile: str | Path = "demo", overrides: dict | None = None) -> Config:
    """A notebook's config from its parameters: the profile's YAML with the overrides on top,
    validated whole; work from the project root (JupyterLab starts kernels in notebooks/); the
    process settings (torch threads under torchrun, TF32) and the seeds set."""
    from transformers import set_seed

    root = project_root()
    os.chdir(root)
    path = profile_path(profile, root)
    cfg = load_config(path, overrides or {})
    # The resolved values, in the executed notebook (stderr: left out of the HTML reading copy).
    print(f"{path.name} with overrides {overrides or {}}: {json.dumps(cfg.to_dict())}", file=sys.stderr)
    distributed.configure(cfg.ddp_timeout)
    precision.apply_tf32(cfg.tf32)
    set_seed(cfg.seed)
    for folder in (cfg.run_dir, cfg.reports, figures_dir(cfg)):
        folder.mkdir(parents=True, exist_ok=True)
    return cfg


class StepOff(RuntimeError):
    """A notebook whose step this profile switches off (the engine leaves it out of the graph)."""


def require(enabled, what: str, key: str) -> None:
    """Stop the notebook with a message naming the profile key that switches its step on."""
    if not enabled:
        raise StepOff(
            f"{what} is off in this profile ({key}); change it in the profile or with overrides to run this notebook"
        )


def figures_dir(cfg: Config) -> Path:
    return cfg.reports / "figures"


def model_dir(cfg: Config, stage: str) -> Path:
    return cfg.run_dir / f"model_{stage}"


def caption_template(cfg: Config, split_name: str) -> str:
    return cfg.model_spec.template_for(split_name)


def study_splits(cfg: Config):
    """The study's splits (data.splits.load_splits), the revisions loaded written to
    runs/<profile>/record.json (section data) for provenance."""
    splits, revisions = load_splits(cfg.data_spec)
    record(cfg, "data", revisions)
    return splits


def outside_sets(cfg: Config) -> dict:
    """The profile's outside sets, read (a synthetic one written first, once, beside the run's data)."""
    return outside.outside_sets(cfg.external, cfg.data_dir, cfg.synthetic_image_size, cfg.seed)
