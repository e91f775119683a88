import io
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.config import load_config
from helpers.profiles import write_resolved

ROOT = Path(__file__).resolve().parents[1]
# The engine's report module (workflow/scripts/report.py), as its index rule imports it.
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
torch.set_num_threads(2)


def write_profile(path: Path, values: dict) -> Path:
    """A profile file (in sections, every key) holding these values on top of the defaults."""
    return write_resolved(load_config(values), path)


@pytest.fixture(scope="session")
def smoke_cfg(tmp_path_factory):
    """The smoke profile, writing under a temporary work dir."""
    cfg = load_config(ROOT / "params" / "smoke.yaml").to_dict()
    base = tmp_path_factory.mktemp("work")
    cfg.update(work_dir=str(base / "runs"), report_dir=str(base / "reports"))
    return load_config(cfg)


@pytest.fixture(scope="session")
def smoke_splits(smoke_cfg):
    from study.setup import study_splits

    return study_splits(smoke_cfg)


@pytest.fixture(scope="session")
def smoke_model(smoke_cfg):
    from helpers.modeling.building import build_model

    return build_model(smoke_cfg.model_spec)


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    from helpers.config import load_config
    from helpers.modeling.building import build_model
    from helpers.modeling.checkpoints import save_detector

    model, tokenizer = build_model(load_config(ROOT / "params" / "smoke.yaml").model_spec)
    return save_detector(model, tokenizer, tmp_path_factory.mktemp("model") / "m")


def png_bytes(size=(16, 12), color=(200, 30, 30), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(sum(color))
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


# Separable images for a model that has learned something: real photos bright on top and dark
# below, AI images the other way up, each generator with its own tint (Task B). Real photos share
# SD 2.1's tint, so orientation alone tells those two apart.
TINTS = {0: (60, 0, 0), 1: (60, 0, 0), 2: (0, 60, 0), 3: (0, 0, 60), 4: (60, 60, 0), 5: (0, 60, 60)}


def pattern(label_b: int, side: int = 32, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    top, bottom = (210, 40) if label_b == 0 else (40, 210)
    pixels = np.empty((side, side, 3), np.float64)
    pixels[: side // 2], pixels[side // 2 :] = top, bottom
    pixels += np.array(TINTS[label_b]) + rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def learned_dir(tmp_path_factory):
    """A smoke-size detector trained (a few hundred steps, empty captions, as a folder is scored)
    until it tells the patterns apart: its answers depend on what the pipeline feeds it."""
    from helpers.cache.text import tokenize
    from helpers.data.images import square_uint8
    from helpers.modeling.building import build_model
    from helpers.modeling.checkpoints import save_detector

    cfg = load_config(ROOT / "params" / "smoke.yaml")
    model, tokenizer = build_model(cfg.model_spec)
    labels = np.tile(np.arange(6), 32)
    pixels = torch.from_numpy(
        np.stack([square_uint8(pattern(int(b), seed=i), model.config.image_size) for i, b in enumerate(labels)])
    )
    ids, lengths = tokenize(tokenizer, [""] * len(labels), cfg.max_caption_length)
    ids = torch.from_numpy(ids[:, : max(int(lengths.max()), 1)]).long()
    mask = (torch.arange(ids.shape[1])[None] < torch.from_numpy(lengths)[:, None]).long()
    label_b = torch.from_numpy(labels)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(150):
        batch = torch.from_numpy(np.random.default_rng(step).choice(len(labels), 32, replace=False))
        out = model(ids[batch], mask[batch], pixels[batch], (label_b[batch] != 0).long(), label_b[batch])
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
    return save_detector(model.eval(), tokenizer, tmp_path_factory.mktemp("learned") / "m")


# What the engine's tests need of a project: the engine's file, the notebooks, the profiles and the
# package, which a copy's kernels import (PYTHONPATH) in place of the checkout's.
PROJECT_FILES = ("workflow", "notebooks", "params", "src", "pyproject.toml")


def copy_project(to: Path) -> Path:
    import shutil

    to.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, to / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, to / name)
    return to


def snakemake(project: Path, profile: Path, *args, config=(), targets=(), timeout=900, directory: Path | None = None):
    """The engine as `make` runs it, on `project` (a copy, or ROOT) from `directory` (default: the
    project), with the profile and `config` (KEY=VALUE overrides), for `targets` (rules; default:
    the whole study); the completed process."""
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(project / "workflow" / "Snakefile"),
        "--directory",
        str(directory or project),
        "--cores",
        "2",
        "--rerun-incomplete",
        "--config",
        f"profile={profile}",
        *config,
        *args,
        *(("--", *targets) if targets else ()),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(project / "src")}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def planned_jobs(done) -> dict[str, int]:
    """{rule: jobs} from a dry run's 'Job stats' table; {} when it has nothing to do."""
    if "Nothing to be done" in done.stdout + done.stderr:
        return {}
    text = done.stdout + done.stderr
    table = text[text.index("Job stats:") :].splitlines()[3:]
    found = {}
    for line in table:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        found[parts[0]] = int(parts[1])
    return found
