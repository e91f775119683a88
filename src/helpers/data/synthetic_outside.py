"""An outside set for the synthetic demo: the same kinds of sources made differently (another seed,
everything re-encoded as JPEG at sizes that are not square), and one generator that no training set
holds; written as a labelled folder (real/, ai/<generator>/)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from helpers.data.synthetic import RENDERERS, _encode, _scene, _seed_of, _uint8, make_captions
from helpers.files import exclusive, written_whole

OUTSIDE_FOLDERS = ("sd21", "sdxl", "sd3", "dalle3", "midjourney6")
UNSEEN_GENERATOR = "unseen_vq"


def _unseen_vq(caption, size, rng):
    """A generator trace absent from training: a coarse colour palette (vector-quantised decoder)
    with a faint 3-pixel checkerboard."""
    yy, xx = np.mgrid[0:size, 0:size]
    pixels = _scene(caption, size, size, rng) + 3.0 * (((xx // 3) + (yy // 3)) % 2)[..., None]
    return _encode(_uint8(pixels).quantize(colors=48).convert("RGB"), "PNG")


def _as_shared_online(raw: bytes, rng) -> bytes:
    """Re-encoded as a platform would: resized to a 4:3 or 3:4 frame, JPEG at quality 75-92."""
    image = Image.open(io.BytesIO(raw)).convert("RGB")
    width, height = image.size
    frame = (width, int(width * 3 / 4)) if rng.random() < 0.5 else (int(height * 3 / 4), height)
    return _encode(image.resize(frame, Image.BICUBIC), "JPEG", quality=int(rng.integers(75, 93)))


def write_outside(folder: str | Path, captions: int, image_size: int, seed: int) -> Path:
    """A labelled folder (real/, ai/<generator>/) built differently from the training data; written
    once per settings, then reused. See OUTSIDE_FOLDERS and UNSEEN_GENERATOR."""
    folder = Path(folder)
    with exclusive(folder):  # notebooks side by side: one writes, the others wait and read
        if not folder.is_dir():  # only a complete set is renamed into place
            _write_outside(folder, captions, image_size, seed)
    return folder


def _write_outside(folder: Path, captions: int, image_size: int, seed: int) -> None:
    renderers = dict(zip(("real", *OUTSIDE_FOLDERS), RENDERERS))
    renderers[UNSEEN_GENERATOR] = _unseen_vq
    with written_whole(folder) as partial:
        for i, caption in enumerate(tqdm(make_captions(captions, seed + 7919), desc="outside set", unit="caption")):
            for name, render in renderers.items():
                rng = np.random.default_rng(_seed_of(seed, "outside", caption, name))
                target = partial / ("real" if name == "real" else f"ai/{name}")
                target.mkdir(parents=True, exist_ok=True)
                (target / f"{i:05d}.jpg").write_bytes(_as_shared_online(render(caption, image_size, rng), rng))
