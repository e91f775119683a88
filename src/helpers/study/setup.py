"""A notebook's start: the project root, the profile with its overrides, seeds, the process
settings (timeout, TF32), and where the run's files go."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from helpers.config import Config, load_config
from helpers.training import distributed, precision


def project_root(start: Path | None = None) -> Path:
    """The folder holding pyproject.toml, so notebooks run the same from notebooks/ or the root."""
    here = (start or Path.cwd()).resolve()
    # Then the checkout this package was installed from (editable install), wherever the kernel starts.
    for folder in (here, *here.parents, Path(__file__).resolve().parents[3]):
        if (folder / "pyproject.toml").is_file() and (folder / "src" / "helpers").is_dir():
            return folder
    raise FileNotFoundError(f"no project root (pyproject.toml with src/helpers) above {here}")


def profile_path(profile: str | Path, root: Path) -> Path:
    """A profile name (demo) means params/<name>.yaml of the project; anything else is a path."""
    path = Path(profile)
    return path if path.suffix in (".yaml", ".yml") else root / "params" / f"{profile}.yaml"


def setup(namespace: dict) -> Config:
    """The notebook's config from its parameters (profile, overrides): the profile's YAML with
    the overrides on top, validated whole; work from the project root; seeds set."""
    from transformers import set_seed

    root = project_root()
    os.chdir(root)
    path = profile_path(namespace["profile"], root)
    cfg = load_config(path, namespace.get("overrides") or {})
    # The resolved values, in the executed notebook (stderr: left out of the HTML reading copy).
    print(f"{path.name} with overrides {namespace.get('overrides') or {}}: {json.dumps(cfg.to_dict())}", file=sys.stderr)
    distributed.configure(cfg)
    precision.apply_tf32(cfg)
    set_seed(cfg.seed)
    for folder in (cfg.run_dir, cfg.reports, figures_dir(cfg)):
        folder.mkdir(parents=True, exist_ok=True)
    return cfg


def figures_dir(cfg: Config) -> Path:
    return cfg.reports / "figures"


def model_dir(cfg: Config, stage: str) -> Path:
    return cfg.run_dir / f"model_{stage}"


def caption_template(cfg: Config, split_name: str) -> str:
    return cfg.caption_template if split_name in cfg.template_splits else "{}"
