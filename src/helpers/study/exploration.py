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


def caption_statistics(splits) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(words per caption, rows per caption), per split."""
    captions = pd.DataFrame({"split": [n for n, s in splits.items() for _ in range(len(s))],
                             "caption": [c for s in splits.values() for c in s["Caption"]]})
    words = captions.assign(words=captions["caption"].str.split().str.len()).groupby("split")["words"].describe()
    repeats = captions.groupby(["split", "caption"]).size().groupby("split").describe()
    return words, repeats.rename(columns={"mean": "rows per caption (mean)"})


def metadata_summary(meta: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(median size, square share and median file size per class, formats per class)."""
    from helpers.labels import CLASS_NAMES

    meta = meta.assign(**{"class": [CLASS_NAMES[b] for b in meta["Label_B"]]})
    present = [c for c in CLASS_NAMES if c in set(meta["class"])]
    summary = meta.groupby("class").agg(rows=("width", "size"), median_width=("width", "median"),
                                        median_height=("height", "median"),
                                        square_share=("aspect", lambda a: float((a == 1).mean())),
                                        median_kb=("file_bytes", lambda b: b.median() / 1024))
    return summary.loc[present], pd.crosstab(meta["class"], meta["format"]).loc[present]


def examples(split, per_class: int = 4) -> dict[str, list]:
    from helpers.labels import CLASS_NAMES

    labels_b = np.asarray(split["Label_B"])
    found = {}
    for cls, name in enumerate(CLASS_NAMES):
        cells = [split[int(r)]["Image"] for r in np.flatnonzero(labels_b == cls)[:per_class]]
        found[name] = [image for image, _ in map(read_image_or_reason, cells) if image is not None]
    return found


def metadata_conclusion(summary: pd.DataFrame, formats: pd.DataFrame) -> str:
    """Where size and format alone tell real from AI: the shortcut notebook 05 measures."""
    if "real" not in summary.index or len(summary) < 2:
        return "The training split lacks real or AI images, so nothing can be said about shortcuts."
    ai = summary.drop(index="real")
    main_format = formats.idxmax(axis=1)
    real_format, ai_formats = main_format["real"], sorted(set(main_format.drop(index="real")))
    text = (f"{100 * summary.loc['real', 'square_share']:.0f}% of real photos are square against "
            f"{100 * ai['square_share'].min():.0f}–{100 * ai['square_share'].max():.0f}% of the generators' images; "
            f"real photos are mostly {real_format}, the generators' mostly {', '.join(ai_formats)}. ")
    differs = abs(summary.loc["real", "square_share"] - ai["square_share"].mean()) > 0.3 or real_format not in ai_formats
    return text + ("Size and format alone separate real from AI here: a detector can score well without looking at "
                   "the pixels, which notebook 05 measures." if differs else
                   "Size and format do not separate real from AI here.")


def data_sentence(cfg) -> str:
    """Where the data comes from, and at which revision."""
    revision = f" (revision `{cfg.dataset_revision}`)" if cfg.dataset_revision else " (the latest revision)"
    pool = (f"; unlabelled pool `{cfg.unlabelled_dataset or cfg.dataset}`, split `{cfg.unlabelled_split}`"
            if cfg.unlabelled_split else "; no unlabelled pool")
    return f"Data: `{cfg.dataset}`" + (revision if cfg.dataset != "synthetic" else " (embedded, made here)") + pool + "."
