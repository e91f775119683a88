"""What the data looks like: rows per class and split, the decode caches and their unreadable rows, and
per-row image metadata, read from file headers without decoding."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image

from helpers.labels import CLASS_NAMES


def _header(cell) -> dict:
    raw = cell.get("bytes") if isinstance(cell, dict) else None
    try:
        source = io.BytesIO(raw) if raw else (cell.get("path") if isinstance(cell, dict) else cell)
        with Image.open(source) as image:
            quality = _jpeg_quality(image) if image.format == "JPEG" else np.nan
            size = len(raw) if raw else _file_size(source)
            return {
                "width": image.width,
                "height": image.height,
                "format": image.format or "unknown",
                "file_bytes": size,
                "jpeg_quality": quality,
            }
    except Exception as error:  # a header that will not parse is reported as such, not dropped
        return {
            "width": np.nan,
            "height": np.nan,
            "format": f"unreadable: {type(error).__name__}",
            "file_bytes": len(raw) if raw else np.nan,
            "jpeg_quality": np.nan,
        }


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


def metadata_conclusion(summary: pd.DataFrame, formats: pd.DataFrame) -> str:
    """Where size and format alone tell real from AI: the shortcut notebook 05 measures."""
    if "real" not in summary.index or len(summary) < 2:
        return "The training split lacks real or AI images, so nothing can be said about shortcuts."
    ai = summary.drop(index="real")
    main_format = formats.idxmax(axis=1)
    real_format, ai_formats = main_format["real"], sorted(set(main_format.drop(index="real")))
    text = (
        f"{100 * summary.loc['real', 'square_share']:.0f}% of real photos are square against "
        f"{100 * ai['square_share'].min():.0f}–{100 * ai['square_share'].max():.0f}% of the generators' images; "
        f"real photos are mostly {real_format}, the generators' mostly {', '.join(ai_formats)}. "
    )
    differs = (
        abs(summary.loc["real", "square_share"] - ai["square_share"].mean()) > 0.3 or real_format not in ai_formats
    )
    return text + (
        "Size and format alone separate real from AI here: a detector can score well without looking at "
        "the pixels, which notebook 05 measures."
        if differs
        else "Size and format do not separate real from AI here."
    )


def split_table(splits) -> pd.DataFrame:
    """Rows per class and split (unlabelled rows as such)."""
    counts = (
        pd.DataFrame({name: pd.Series(split["Label_B"]).value_counts().sort_index() for name, split in splits.items()})
        .fillna(0)
        .astype(int)
    )
    counts.index = [CLASS_NAMES[i] if i >= 0 else "unlabelled" for i in counts.index]
    return counts


def cache_table(splits, caches) -> pd.DataFrame:
    """Per cached split: its rows, the rows cached and the unreadable ones (listed by unreadable_rows)."""
    return pd.DataFrame(
        {n: {"rows": len(splits[n]), "cached": len(c), "unreadable": c.n_failed} for n, c in caches.items()}
    ).T


def unreadable_rows(caches, first: int = 10) -> pd.DataFrame:
    """The first unreadable images of each split, with their reasons."""
    found = [c.failures.head(first).assign(split=n) for n, c in caches.items() if c.n_failed]
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=["row", "image", "reason", "split"])
