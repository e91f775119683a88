import io
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.config import load_config

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def smoke_cfg(tmp_path_factory):
    """The smoke profile, writing under a temporary work dir."""
    cfg = load_config(ROOT / "params" / "smoke.yaml").to_dict()
    base = tmp_path_factory.mktemp("work")
    cfg.update(work_dir=str(base / "runs"), report_dir=str(base / "reports"))
    return load_config(cfg)


@pytest.fixture(scope="session")
def smoke_splits(smoke_cfg):
    from helpers.data.splits import study_splits

    return study_splits(smoke_cfg)


@pytest.fixture(scope="session")
def smoke_model(smoke_cfg):
    from helpers.modeling.detector import build_model

    return build_model(smoke_cfg)


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    from helpers.config import load_config
    from helpers.modeling.detector import build_model, save_detector

    model, tokenizer = build_model(load_config(ROOT / "params" / "smoke.yaml"))
    return save_detector(model, tokenizer, tmp_path_factory.mktemp("model") / "m")


def png_bytes(size=(16, 12), color=(200, 30, 30), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(sum(color))
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()
