"""A trained detector on disk: one folder (config with both encoders' configs and the preprocessing,
safetensors, tokenizer, training_meta.json) that loads with no network, and a digest of its weights."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer

from helpers.modeling.detector import DualEncoderDetector


def save_detector(model: DualEncoderDetector, tokenizer, out_dir: str | Path, metadata: dict | None = None) -> Path:
    import json

    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if metadata is not None:
        (out_dir / "training_meta.json").write_text(json.dumps(metadata, indent=2, default=str))
    return out_dir


def weights_fingerprint(path: str | Path) -> str:
    """A digest of a saved detector's weights file: which model made an artefact (a pseudo-label
    selection) is then a fact about the weights, not about a folder name."""
    import hashlib

    weights = Path(path) / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing; train the model first (notebook 02)")
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> tuple[DualEncoderDetector, object]:
    """A saved detector and its tokenizer, from local files only."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a saved detector (no config.json); train one first (make demo, or ct2-train params/<profile>.yaml)"
        )
    model = DualEncoderDetector.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model.to(device).eval(), tokenizer
