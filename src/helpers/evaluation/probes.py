"""Baselines on frozen vision features: the profile's vision tower as it comes (pretrained CLIP in
the paper profile, its random initialisation where the profile builds it from a config), pooled
features extracted once per split and kept on disk, then a linear classifier for Task A:
logistic regression on every training image (Ojha et al., CVPR 2023, "UnivFD") or a linear SVM on
a few real/AI pairs (Cozzolino et al., CVPR 2024)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from helpers.cache.dataset import CachedSplit
from helpers.cache.text import tower_digest
from helpers.files import exclusive, written_whole


@torch.inference_mode()
def vision_features(model, pixels, batch_size: int = 256, desc: str | None = None) -> np.ndarray:
    """The vision tower's pooled output [N, D] for uint8 pixels [N, 3, S, S] (a cache's PixelView or
    an array), fed as the model feeds them (normalised; residuals under vision_input: npr)."""
    model.eval()
    device = next(model.parameters()).device
    parts = []
    for start in tqdm(range(0, len(pixels), batch_size), desc=desc, unit="batch", disable=desc is None):
        batch = torch.from_numpy(np.asarray(pixels[np.arange(start, min(start + batch_size, len(pixels)))]))
        _, pooled = model.encode_image(batch.to(device))
        parts.append(pooled.float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def cached_features(model, cached: CachedSplit, folder, batch_size: int = 256) -> np.ndarray:
    """vision_features of a cached split, computed once per (split, tower weights, tower input) and
    kept under folder."""
    path = Path(folder) / f"{model.config.vision_input}-{tower_digest(model.vision_encoder)}-{cached.fingerprint()}.npy"
    with exclusive(path):
        if path.is_file():
            return np.load(path)
        features = vision_features(model, cached.pixels, batch_size, desc=f"frozen features ({len(cached)} images)")
        with written_whole(path) as partial:
            np.save(partial, features)
    return features


def logistic_probe(features: np.ndarray, label_a: np.ndarray, seed: int):
    """Standardised features, then logistic regression (Task A) on every row."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed)).fit(features, label_a)


def few_shot_svm(features: np.ndarray, label_a: np.ndarray, pairs: int, seed: int):
    """A linear SVM (Task A) on `pairs` real and `pairs` AI rows drawn at random (all of the
    smaller class when it has fewer), standardised features. Returns (the classifier, pairs used)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(seed)
    real, ai = np.flatnonzero(label_a == 0), np.flatnonzero(label_a == 1)
    used = min(pairs, len(real), len(ai))
    rows = np.concatenate([rng.choice(real, used, replace=False), rng.choice(ai, used, replace=False)])
    classifier = make_pipeline(StandardScaler(), LinearSVC(random_state=seed, max_iter=5000))
    return classifier.fit(features[rows], label_a[rows]), used
