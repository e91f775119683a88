"""What the data looks like: per-row image metadata, read from file headers without decoding."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image

from helpers.data.images import read_image_or_reason, square_uint8


def _header(cell) -> dict:
    raw = cell.get("bytes") if isinstance(cell, dict) else None
    try:
        source = io.BytesIO(raw) if raw else (cell.get("path") if isinstance(cell, dict) else cell)
        with Image.open(source) as image:
            quality = _jpeg_quality(image) if image.format == "JPEG" else np.nan
            size = len(raw) if raw else _file_size(source)
            return {"width": image.width, "height": image.height, "format": image.format or "unknown",
                    "file_bytes": size, "jpeg_quality": quality}
    except Exception as error:  # a header that will not parse is reported as such, not dropped
        return {"width": np.nan, "height": np.nan, "format": f"unreadable: {type(error).__name__}",
                "file_bytes": len(raw) if raw else np.nan, "jpeg_quality": np.nan}


def _file_size(path) -> float:
    import os

    return float(os.path.getsize(path))


def _jpeg_quality(image) -> float:
    """A rough JPEG quality estimate from the luminance quantisation table (IJG scaling)."""
    tables = getattr(image, "quantization", None)
    if not tables:
        return np.nan
    mean_q = float(np.mean(tables[0]))
    # IJG's base luminance table averages 57.6; quality scales it by 50/q (q<50) or 2-q/50.
    scale = mean_q / 57.625
    quality = 50.0 / scale if scale > 1.0 else 50.0 * (2.0 - scale)
    return float(np.clip(round(quality), 1, 100))


def image_metadata(split, max_rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """One row per image: width, height, aspect, format, file size, JPEG quality, labels, caption length.
    With max_rows, a random sample of that many rows (the frame says which: column 'row')."""
    import datasets

    split = split.cast_column("Image", datasets.Image(decode=False))
    rows = np.arange(len(split))
    if max_rows is not None and len(split) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(split), size=max_rows, replace=False))
        split = split.select(rows)
    frame = pd.DataFrame([_header(cell) for cell in split["Image"]])
    frame.insert(0, "row", rows)
    frame["aspect"] = frame["width"] / frame["height"]
    frame["Label_A"] = split["Label_A"]
    frame["Label_B"] = split["Label_B"]
    frame["caption_words"] = [len((c or "").split()) for c in split["Caption"]]
    return frame


def mean_power_spectrum(split, label_b: int, size: int = 64, max_images: int = 60) -> np.ndarray:
    """Mean log power spectrum (centred) of the grey, preprocessed images of one class;
    periodic generator traces show up as off-centre peaks."""
    import datasets

    split = split.cast_column("Image", datasets.Image(decode=False))
    rows = np.flatnonzero(np.asarray(split["Label_B"]) == label_b)[:max_images]
    spectra = []
    for row in rows:
        image, _ = read_image_or_reason(split[int(row)]["Image"])
        if image is None:
            continue
        grey = square_uint8(image, size).astype(np.float64).mean(0)
        grey -= grey.mean()
        spectra.append(np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(grey))) ** 2))
    return np.mean(spectra, axis=0) if spectra else np.zeros((size, size))
