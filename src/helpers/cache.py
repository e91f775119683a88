"""The decode cache: every image decoded, resized and centre-cropped once, every caption
tokenised once, stored as uint8 / int32 arrays on disk; pixels are read back a batch at a time.

A cache is keyed by the source split's fingerprint, the image size and the tokenizer's
vocabulary and length, so a change to any of them builds a new one. Images that cannot be
read are left out of the arrays and listed, one reason per row, in errors.csv; the count
of cached + failed rows always equals the split's rows.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .imageio import decode_for_model
from .locking import exclusive

CACHE_VERSION = 2
CHUNK_ROWS = 512


class BadImagesError(RuntimeError):
    """Raised under bad_images='error' when any row's image cannot be read."""


class MappedPixels:
    """A cache's pixel file (raw uint8 rows), read with positioned reads: a batch costs one read per
    run of consecutive rows and lands in a fresh array, so the process's memory holds batches,
    not the pages of a file it has mapped. It pickles as its path, so a data-loader worker (or
    a spawned process) opens the file itself instead of receiving a copy of the pixels."""

    def __init__(self, path: str | Path, rows: int, row_shape: tuple[int, ...]):
        self.path, self.rows, self.row_shape = str(path), rows, tuple(row_shape)
        self.row_bytes = int(np.prod(self.row_shape))
        self._fd = None

    def __getstate__(self):
        return {**self.__dict__, "_fd": None}

    def __del__(self):
        if self._fd is not None:
            os.close(self._fd)

    def __len__(self) -> int:
        return self.rows

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.rows, *self.row_shape)

    dtype = np.dtype(np.uint8)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """Rows in the order given (fastest when ascending, as PixelView asks)."""
        rows = np.asarray(rows, np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.rows):
            raise IndexError(f"row out of range 0..{self.rows - 1} in {self.path}")
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        out = np.empty((len(rows), self.row_bytes), np.uint8)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for run in np.split(np.arange(len(rows)), breaks):
            if len(run):
                size = len(run) * self.row_bytes
                data = os.pread(self._fd, size, int(rows[run[0]]) * self.row_bytes)
                if len(data) != size:
                    raise OSError(f"{self.path} is shorter than its {self.rows} rows: the cache is damaged; delete it")
                out[run[0]:run[-1] + 1] = np.frombuffer(data, np.uint8).reshape(len(run), -1)
        return out.reshape(len(rows), *self.row_shape)


class PixelView:
    """Rows of one or more pixel sources (cache files or arrays) in a chosen order: for
    each row, which source and which row of it. Taking a subset or joining views composes these
    index arrays; pixels are read only when a batch asks for them, so pseudo-label augmentation
    costs 16 bytes a row, not a copy of the images."""

    def __init__(self, sources: list, source_of: np.ndarray, row_of: np.ndarray):
        self.sources = sources
        self.source_of = np.asarray(source_of, np.int64)
        self.row_of = np.asarray(row_of, np.int64)

    @classmethod
    def of(cls, pixels) -> "PixelView":
        if isinstance(pixels, PixelView):
            return pixels
        return cls([pixels], np.zeros(len(pixels), np.int64), np.arange(len(pixels)))

    def __len__(self) -> int:
        return len(self.row_of)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.sources[0].shape[1:])

    @property
    def dtype(self):
        return self.sources[0].dtype

    def take(self, indices) -> "PixelView":
        indices = np.asarray(indices, np.int64)
        return PixelView(self.sources, self.source_of[indices], self.row_of[indices])

    def __getitem__(self, indices) -> np.ndarray:
        if isinstance(indices, slice):
            indices = np.arange(len(self))[indices]
        indices = np.atleast_1d(np.asarray(indices, np.int64))
        out = np.empty((len(indices), *self.shape[1:]), self.dtype)
        source_of, row_of = self.source_of[indices], self.row_of[indices]
        for source in np.unique(source_of):
            where = np.flatnonzero(source_of == source)
            where = where[np.argsort(row_of[where], kind="stable")]  # files read fastest in order
            out[where] = self.sources[source][row_of[where]]
        return out

    def __array__(self, dtype=None, copy=None):
        array = self[np.arange(len(self))]
        return array if dtype is None else array.astype(dtype)

    @staticmethod
    def concat(views: list) -> "PixelView":
        views = [PixelView.of(v) for v in views]
        offsets = np.cumsum([0] + [len(v.sources) for v in views[:-1]])
        return PixelView([s for v in views for s in v.sources],
                         np.concatenate([v.source_of + o for v, o in zip(views, offsets)]),
                         np.concatenate([v.row_of for v in views]))

    def describe(self) -> list:
        """What the view reads, for fingerprints: each source's cache folder (or content hash), and the rows."""
        names = [Path(s.path).parent.name if isinstance(s, MappedPixels)
                 else hashlib.sha256(np.ascontiguousarray(s).tobytes()).hexdigest()[:16] for s in self.sources]
        rows = hashlib.sha256(self.source_of.tobytes() + self.row_of.tobytes()).hexdigest()[:16]
        return [names, rows]


@dataclass
class CachedSplit(torch.utils.data.Dataset):
    """Arrays of one split, row-aligned: pixels [N,3,S,S] uint8 (a PixelView over the cache file,
    or an array), input_ids [N,L] int32,
    lengths [N] (tokens before padding), label_a/label_b [N] int64 (-1 unknown), rows [N]
    (the row of the source split each entry came from)."""

    pixels: PixelView | np.ndarray
    input_ids: np.ndarray
    lengths: np.ndarray
    label_a: np.ndarray
    label_b: np.ndarray
    rows: np.ndarray
    failures: pd.DataFrame | None = None
    # Pooled outputs of a frozen text tower [N, D], computed once per caption (see with_text_features).
    text_features: np.ndarray | None = None
    # True where the image could not be read and the model gets the all-zero input instead (blank_rows).
    blank: np.ndarray | None = None
    # A digest of each row's encoded image, on a split as cached (not carried by subset or concat).
    digests: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, indices) -> dict[str, np.ndarray]:
        # One fancy-indexed read per array per batch instead of one per row.
        indices = np.asarray(indices)
        batch = {"pixel_values": self.pixels[indices], "input_ids": self.input_ids[indices],
                 "lengths": self.lengths[indices], "label_a": self.label_a[indices], "label_b": self.label_b[indices]}
        if self.text_features is not None:
            batch["text_features"] = self.text_features[indices]
        if self.blank is not None:
            batch["blank"] = self.blank[indices]
        return batch

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.__getitems__([index])

    def subset(self, indices) -> "CachedSplit":
        indices = np.asarray(indices, dtype=np.int64)
        features = None if self.text_features is None else self.text_features[indices]
        blank = None if self.blank is None else self.blank[indices]
        return CachedSplit(PixelView.of(self.pixels).take(indices), self.input_ids[indices], self.lengths[indices],
                           self.label_a[indices], self.label_b[indices], self.rows[indices], text_features=features,
                           blank=blank)

    def relabelled(self, label_a: np.ndarray, label_b: np.ndarray) -> "CachedSplit":
        return dataclasses.replace(self, label_a=np.asarray(label_a, np.int64), label_b=np.asarray(label_b, np.int64),
                                   failures=None)

    def with_pixels(self, pixels: np.ndarray) -> "CachedSplit":
        return dataclasses.replace(self, pixels=pixels, failures=None)

    @staticmethod
    def concat(parts: list["CachedSplit"]) -> "CachedSplit":
        width = max(p.input_ids.shape[1] for p in parts)
        ids = [np.pad(p.input_ids, ((0, 0), (0, width - p.input_ids.shape[1]))) for p in parts]
        features = None
        if all(p.text_features is not None for p in parts):
            features = np.concatenate([p.text_features for p in parts])
        blank = None
        if any(p.blank is not None for p in parts):
            blank = np.concatenate([np.zeros(len(p), bool) if p.blank is None else p.blank for p in parts])
        return CachedSplit(PixelView.concat([p.pixels for p in parts]), np.concatenate(ids),
                           *(np.concatenate([getattr(p, k) for p in parts]) for k in ("lengths", "label_a", "label_b", "rows")),
                           text_features=features, blank=blank)

    @property
    def n_failed(self) -> int:
        return 0 if self.failures is None else len(self.failures)

    def fingerprint(self) -> str:
        """Identifies the rows, their sources and labels: a checkpoint trained on other data
        (another cache, other pseudo-labels) has another fingerprint."""
        digest = hashlib.sha256(json.dumps(PixelView.of(self.pixels).describe()).encode())
        extra = () if self.blank is None else (self.blank,)
        for array in (self.input_ids, self.lengths, self.label_a, self.label_b, self.rows, *extra):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]


def collate(batch) -> dict[str, torch.Tensor]:
    """Tensors for the model; text trimmed to the longest caption in the batch."""
    if isinstance(batch, list):  # rows fetched one by one
        batch = {k: np.concatenate([row[k] for row in batch]) for k in batch[0]}
    width = max(int(batch["lengths"].max()), 1)
    input_ids = torch.from_numpy(np.ascontiguousarray(batch["input_ids"][:, :width])).long()
    positions = torch.arange(width).unsqueeze(0)
    tensors = {"input_ids": input_ids,
               "attention_mask": (positions < torch.from_numpy(batch["lengths"]).long().unsqueeze(1)).long(),
               "pixel_values": torch.from_numpy(np.ascontiguousarray(batch["pixel_values"])),
               "label_a": torch.from_numpy(batch["label_a"]), "label_b": torch.from_numpy(batch["label_b"])}
    if "text_features" in batch:
        tensors["text_features"] = torch.from_numpy(np.ascontiguousarray(batch["text_features"]))
    if "blank" in batch:
        tensors["blank_image"] = torch.from_numpy(np.ascontiguousarray(batch["blank"]))
    return tensors


@torch.inference_mode()
def with_text_features(cached: CachedSplit, model, batch_size: int = 256) -> CachedSplit:
    """The split with its frozen text tower's pooled output attached, computed once per distinct
    caption (each appears under six classes) instead of once per row and epoch."""
    unique, first, inverse = np.unique(cached.input_ids, axis=0, return_index=True, return_inverse=True)
    lengths = cached.lengths[first]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts = []
    for start in tqdm(range(0, len(unique), batch_size), desc="text features (frozen tower)", unit="batch"):
        width = max(int(lengths[start:start + batch_size].max()), 1)
        ids = torch.from_numpy(np.ascontiguousarray(unique[start:start + batch_size, :width])).long()
        mask = (torch.arange(width).unsqueeze(0) < torch.from_numpy(lengths[start:start + batch_size]).long().unsqueeze(1)).long()
        parts.append(model.encode_text(ids.to(device), mask.to(device)).float().cpu().numpy())
    model.train(was_training)
    return dataclasses.replace(cached, text_features=np.concatenate(parts)[inverse.reshape(-1)])


def tokenizer_key(tokenizer) -> str:
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    lower = getattr(tokenizer, "do_lower_case", None)
    return hashlib.sha256(f"{type(tokenizer).__name__}|{lower}|{vocab}".encode()).hexdigest()[:16]


def cache_key(split, image_size: int, tokenizer, max_length: int, caption_template: str = "{}") -> str:
    parts = [CACHE_VERSION, split._fingerprint, len(split), image_size, tokenizer_key(tokenizer), max_length, caption_template]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def release_mapped_pages(paths: set[str]) -> None:
    """Drop this process's resident pages of the given memory-mapped files (Linux; elsewhere a no-op).

    datasets reads a split's Arrow files through memory maps, so every image the cache build
    reads once would stay resident until the process ends: a resident set that grows with the
    data. MADV_DONTNEED on these read-only file mappings unmaps the pages from this process only;
    they stay in the OS file cache, and a later read maps them again with the same content."""
    if not paths or not os.path.exists("/proc/self/maps"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    dont_need = 4
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() in paths and "w" not in fields[1]:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), dont_need)


def _describe(cell) -> str:
    return cell.get("path") or "<embedded bytes>" if isinstance(cell, dict) else str(cell)


def tokenize(tokenizer, captions: list, max_length: int, caption_template: str = "{}") -> tuple[np.ndarray, np.ndarray]:
    """(input_ids [N, max_length] int32, lengths [N]) of template(caption); a missing caption is empty text."""
    texts = [caption_template.replace("{}", caption or "") for caption in captions]
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding="max_length", return_tensors="np")
    return encoded["input_ids"].astype(np.int32), encoded["attention_mask"].sum(1).astype(np.int32)


def blank_rows(split, rows, image_size: int, tokenizer, max_length: int, caption_template: str = "{}") -> CachedSplit:
    """The given rows of a split with the all-zero model input in place of their (unreadable)
    images, and their captions: how the authors' code scores an image it cannot open."""
    rows = np.asarray(rows, np.int64)
    captions = split.select_columns(["Caption"])[rows.tolist()]["Caption"] if len(rows) else []
    ids, lengths = tokenize(tokenizer, captions, max_length, caption_template)
    labels = split.select_columns(["Label_A", "Label_B"])[rows.tolist()] if len(rows) else {"Label_A": [], "Label_B": []}
    return CachedSplit(np.zeros((len(rows), 3, image_size, image_size), np.uint8), ids, lengths,
                       np.asarray(labels["Label_A"], np.int64), np.asarray(labels["Label_B"], np.int64), rows,
                       blank=np.ones(len(rows), bool))


def build_cache(split, name: str, cache_root: str | Path, image_size: int, tokenizer, max_length: int,
                bad_images: str = "skip", workers: int | None = None, caption_template: str = "{}") -> CachedSplit:
    """The cache for one split (built once, then reused). See the module docstring."""
    out = Path(cache_root) / f"{name}-{cache_key(split, image_size, tokenizer, max_length, caption_template)}"
    if (out / "meta.json").is_file():
        return open_cache(out)
    with exclusive(out):
        if (out / "meta.json").is_file():  # another process built it while this one waited
            return open_cache(out)
        return _build(split, name, out, image_size, tokenizer, max_length, bad_images, workers, caption_template)


def _build(split, name: str, out: Path, image_size: int, tokenizer, max_length: int, bad_images: str,
           workers: int | None, caption_template: str) -> CachedSplit:
    """Decode into out.tmp, then rename it to out: a killed build leaves only a .tmp folder (or a
    folder without meta.json), which is never read and is rebuilt from scratch."""
    import datasets

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = len(split)
    # Appended chunk by chunk with ordinary writes: the pages go to the OS cache, not this process.
    pixels = open(tmp / "pixels.u8", "wb")
    ids, lengths, rows, failures, digests = [], [], [], [], []
    sources = {f["filename"] for f in split.cache_files}
    split = split.cast_column("Image", datasets.Image(decode=False))
    sources |= {f["filename"] for f in split.cache_files}
    written = 0
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool, tqdm(total=n, desc=f"cache {name}", unit="img") as bar:
        for start in range(0, n, CHUNK_ROWS):
            chunk = split[start:start + CHUNK_ROWS]
            decoded = list(pool.map(lambda cell: decode_for_model(cell, image_size), chunk["Image"]))
            keep = [i for i, (array, _, _) in enumerate(decoded) if array is not None]
            failures += [{"row": start + i, "image": _describe(chunk["Image"][i]), "reason": reason}
                         for i, (array, reason, _) in enumerate(decoded) if array is None]
            digests += [decoded[i][2] for i in keep]
            if keep:
                pixels.write(np.ascontiguousarray(np.stack([decoded[i][0] for i in keep]), np.uint8).tobytes())
                chunk_ids, chunk_lengths = tokenize(tokenizer, [chunk["Caption"][i] for i in keep], max_length,
                                                    caption_template)
                ids.append(chunk_ids)
                lengths.append(chunk_lengths)
                rows.append(np.asarray(keep) + start)
                written += len(keep)
            bar.update(len(decoded))
            release_mapped_pages(sources)
    failed = pd.DataFrame(failures, columns=["row", "image", "reason"])
    if bad_images == "error" and len(failed):
        first = failed.iloc[0]
        pixels.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise BadImagesError(f"split '{name}': {len(failed)} image(s) cannot be read; first is row {first.row} "
                             f"({first.image}): {first.reason}. Fix or remove them, or set bad_images: skip")
    pixels.close()
    labels = split.select_columns(["Label_A", "Label_B"])
    kept = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    np.save(tmp / "input_ids.npy", np.concatenate(ids) if ids else np.zeros((0, max_length), np.int32))
    np.save(tmp / "lengths.npy", np.concatenate(lengths) if lengths else np.zeros(0, np.int32))
    np.save(tmp / "label_a.npy", np.asarray(labels["Label_A"], np.int64)[kept])
    np.save(tmp / "label_b.npy", np.asarray(labels["Label_B"], np.int64)[kept])
    np.save(tmp / "rows.npy", kept.astype(np.int64))
    np.save(tmp / "digests.npy", np.asarray(digests, dtype="S16"))
    failed.to_csv(tmp / "errors.csv", index=False)
    meta = {"split": name, "rows": n, "cached": written, "failed": len(failed), "image_size": image_size,
            "max_length": max_length, "version": CACHE_VERSION}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"cache {name}: built {written} rows into {out}", flush=True)
    if len(failed):
        print(f"cache {name}: {len(failed)} of {n} images could not be read and are not in the cache; "
              f"reasons in {out / 'errors.csv'}")
    return open_cache(out)


def open_cache(path: str | Path) -> CachedSplit:
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    failures = pd.read_csv(path / "errors.csv", keep_default_na=False)
    side = meta["image_size"]
    return CachedSplit(PixelView.of(MappedPixels(path / "pixels.u8", meta["cached"], (3, side, side))),
                       np.load(path / "input_ids.npy"), np.load(path / "lengths.npy"), np.load(path / "label_a.npy"),
                       np.load(path / "label_b.npy"), np.load(path / "rows.npy"), failures,
                       digests=np.load(path / "digests.npy"))
