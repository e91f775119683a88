"""The decode cache: every image decoded, resized and centre-cropped once, every caption
tokenised once, stored as uint8 / int32 arrays on disk; pixels are read back a batch at a time.

A cache is keyed by the source split's fingerprint, the image size and the tokenizer's
vocabulary and length, so a change to any of them builds a new one. Images that cannot be
read are left out of the arrays and listed, one reason per row, in errors.csv; the count
of cached + failed rows always equals the split's rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from helpers.cache.dataset import CachedSplit
from helpers.cache.pixels import MappedPixels, PixelView, release_mapped_pages
from helpers.cache.text import tokenize, tokenizer_key
from helpers.data.images import decode_for_model
from helpers.files import exclusive, written_whole

CACHE_VERSION = 2
CHUNK_ROWS = 512


class BadImagesError(RuntimeError):
    """Raised under bad_images='error' when any row's image cannot be read."""


def cache_key(split, image_size: int, tokenizer, max_length: int, caption_template: str = "{}") -> str:
    parts = [
        CACHE_VERSION,
        split._fingerprint,
        len(split),
        image_size,
        tokenizer_key(tokenizer),
        max_length,
        caption_template,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


class DiskSpaceError(OSError):
    """Too little free disk for what a step is about to write."""


def cache_bytes(rows: int, image_size: int, max_length: int) -> int:
    """What a split's cache takes on disk: uint8 pixels and int32 token ids per row, and its labels,
    rows, lengths and digests."""
    return rows * (3 * image_size * image_size + 4 * max_length + 8 * 3 + 4 + 16)


def check_free_space(folder: Path, needed: int, what: str, margin: float = 1.1) -> None:
    """Stop before writing rather than die half-way: `what` needs `needed` bytes (plus a margin) in folder."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed * margin:
        raise DiskSpaceError(
            f"{what} needs {needed * margin / 2**30:.1f} GiB in {folder}, which has "
            f"{free / 2**30:.1f} GiB free: free some space there, or point work_dir at a larger disk"
        )


def _describe(cell) -> str:
    return cell.get("path") or "<embedded bytes>" if isinstance(cell, dict) else str(cell)


def blank_rows(split, rows, image_size: int, tokenizer, max_length: int, caption_template: str = "{}") -> CachedSplit:
    """The given rows of a split with the all-zero model input in place of their (unreadable)
    images, and their captions: how the authors' code scores an image it cannot open."""
    rows = np.asarray(rows, np.int64)
    captions = split.select_columns(["Caption"])[rows.tolist()]["Caption"] if len(rows) else []
    ids, lengths = tokenize(tokenizer, captions, max_length, caption_template)
    labels = (
        split.select_columns(["Label_A", "Label_B"])[rows.tolist()] if len(rows) else {"Label_A": [], "Label_B": []}
    )
    return CachedSplit(
        np.zeros((len(rows), 3, image_size, image_size), np.uint8),
        ids,
        lengths,
        np.asarray(labels["Label_A"], np.int64),
        np.asarray(labels["Label_B"], np.int64),
        rows,
        blank=np.ones(len(rows), bool),
    )


def build_cache(
    split,
    name: str,
    cache_root: str | Path,
    image_size: int,
    tokenizer,
    max_length: int,
    bad_images: str = "skip",
    workers: int | None = None,
    caption_template: str = "{}",
) -> CachedSplit:
    """The cache for one split (built once, then reused). See the module docstring."""
    out = Path(cache_root) / f"{name}-{cache_key(split, image_size, tokenizer, max_length, caption_template)}"
    if not (out / "meta.json").is_file():
        with exclusive(out):
            if not (out / "meta.json").is_file():  # else another process built it while this one waited
                _build(split, name, out, image_size, tokenizer, max_length, workers, caption_template)
    cached = open_cache(out)
    if bad_images == "error" and len(cached.failures):  # a cache built under skip is held to error too
        first = cached.failures.iloc[0]
        raise BadImagesError(
            f"split '{name}': {len(cached.failures)} image(s) cannot be read; first is row {first.row} "
            f"({first.image}): {first.reason}. Fix or remove them, or set bad_images: skip"
        )
    return cached


def _build(
    split, name: str, out: Path, image_size: int, tokenizer, max_length: int, workers: int | None, caption_template: str
) -> None:
    """Decode into out.tmp, renamed to out when complete (files.written_whole): a killed build
    leaves only a .tmp folder (or a folder without meta.json), which is never read and is rebuilt."""
    check_free_space(out.parent, cache_bytes(len(split), image_size, max_length), f"the decode cache of '{name}'")
    started = time.perf_counter()
    with written_whole(out) as tmp:
        tmp.mkdir(parents=True)
        decoded = _decode_into(
            tmp / "pixels.u8", split, name, image_size, tokenizer, max_length, workers, caption_template
        )
        failed = pd.DataFrame(decoded["failures"], columns=["row", "image", "reason"])
        labels = split.select_columns(["Label_A", "Label_B"])
        kept = np.concatenate(decoded["rows"]) if decoded["rows"] else np.zeros(0, np.int64)
        np.save(
            tmp / "input_ids.npy",
            np.concatenate(decoded["ids"]) if decoded["ids"] else np.zeros((0, max_length), np.int32),
        )
        np.save(
            tmp / "lengths.npy", np.concatenate(decoded["lengths"]) if decoded["lengths"] else np.zeros(0, np.int32)
        )
        np.save(tmp / "label_a.npy", np.asarray(labels["Label_A"], np.int64)[kept])
        np.save(tmp / "label_b.npy", np.asarray(labels["Label_B"], np.int64)[kept])
        np.save(tmp / "rows.npy", kept.astype(np.int64))
        np.save(tmp / "digests.npy", np.asarray(decoded["digests"], dtype="S16"))
        failed.to_csv(tmp / "errors.csv", index=False)
        meta = {
            "split": name,
            "rows": len(split),
            "cached": len(kept),
            "failed": len(failed),
            "image_size": image_size,
            "max_length": max_length,
            "version": CACHE_VERSION,
            "build_seconds": round(time.perf_counter() - started, 2),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    print(f"cache {name}: built {len(kept)} rows into {out}", flush=True)
    if len(failed):
        print(
            f"cache {name}: {len(failed)} of {len(split)} images could not be read and are not in the cache; "
            f"reasons in {out / 'errors.csv'}"
        )


def _decode_into(
    pixel_file: Path,
    split,
    name: str,
    image_size: int,
    tokenizer,
    max_length: int,
    workers: int | None,
    caption_template: str,
) -> dict[str, list]:
    """Decode and tokenise every row, appending the pixels of readable rows to pixel_file chunk by
    chunk with ordinary writes (the pages go to the OS cache, not this process)."""
    import datasets

    found = {"ids": [], "lengths": [], "rows": [], "failures": [], "digests": []}
    sources = {f["filename"] for f in split.cache_files}
    split = split.cast_column("Image", datasets.Image(decode=False))
    sources |= {f["filename"] for f in split.cache_files}
    with (
        open(pixel_file, "wb") as pixels,
        ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool,
        tqdm(total=len(split), desc=f"cache {name}", unit="img") as bar,
    ):
        for start in range(0, len(split), CHUNK_ROWS):
            chunk = split[start : start + CHUNK_ROWS]
            decoded = list(pool.map(lambda cell: decode_for_model(cell, image_size), chunk["Image"]))
            keep = [i for i, (array, _, _) in enumerate(decoded) if array is not None]
            found["failures"] += [
                {"row": start + i, "image": _describe(chunk["Image"][i]), "reason": reason}
                for i, (array, reason, _) in enumerate(decoded)
                if array is None
            ]
            found["digests"] += [decoded[i][2] for i in keep]
            if keep:
                pixels.write(np.ascontiguousarray(np.stack([decoded[i][0] for i in keep]), np.uint8).tobytes())
                chunk_ids, chunk_lengths = tokenize(
                    tokenizer, [chunk["Caption"][i] for i in keep], max_length, caption_template
                )
                found["ids"].append(chunk_ids)
                found["lengths"].append(chunk_lengths)
                found["rows"].append(np.asarray(keep) + start)
            bar.update(len(decoded))
            release_mapped_pages(sources)
    return found


def open_cache(path: str | Path) -> CachedSplit:
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    failures = pd.read_csv(path / "errors.csv", keep_default_na=False)
    side = meta["image_size"]
    return CachedSplit(
        PixelView.of(MappedPixels(path / "pixels.u8", meta["cached"], (3, side, side))),
        np.load(path / "input_ids.npy"),
        np.load(path / "lengths.npy"),
        np.load(path / "label_a.npy"),
        np.load(path / "label_b.npy"),
        np.load(path / "rows.npy"),
        failures,
        digests=np.load(path / "digests.npy"),
    )
