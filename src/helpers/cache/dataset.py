"""A cached split as the torch Dataset that training and prediction read (CachedSplit), the
collate function, and frozen-text features computed once per caption."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from helpers.cache.pixels import DevicePixels, PixelView
from helpers.cache.text import text_features


@dataclass
class CachedSplit(torch.utils.data.Dataset):
    """Arrays of one split, row-aligned: pixels [N,3,S,S] uint8 (a PixelView over the cache file,
    or an array), input_ids [N,L] int32,
    lengths [N] (tokens before padding), label_a/label_b [N] int64 (-1 unknown), rows [N]
    (the row of the source split each entry came from)."""

    pixels: PixelView | np.ndarray | DevicePixels
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
        batch = {
            "pixel_values": self.pixels[indices],
            "input_ids": self.input_ids[indices],
            "lengths": self.lengths[indices],
            "label_a": self.label_a[indices],
            "label_b": self.label_b[indices],
        }
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
        return CachedSplit(
            PixelView.of(self.pixels).take(indices),
            self.input_ids[indices],
            self.lengths[indices],
            self.label_a[indices],
            self.label_b[indices],
            self.rows[indices],
            text_features=features,
            blank=blank,
        )

    def relabelled(self, label_a: np.ndarray, label_b: np.ndarray) -> "CachedSplit":
        return dataclasses.replace(
            self, label_a=np.asarray(label_a, np.int64), label_b=np.asarray(label_b, np.int64), failures=None
        )

    def with_pixels(self, pixels: np.ndarray) -> "CachedSplit":
        return dataclasses.replace(self, pixels=pixels, failures=None)

    def on_device(self, device) -> "CachedSplit":
        """The split with its pixels held on `device` (DevicePixels): batches are gathered there.
        For a loader in the main process (pixels on a GPU cannot go to worker processes)."""
        return dataclasses.replace(self, pixels=DevicePixels.load(self.pixels, device))

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
        return CachedSplit(
            PixelView.concat([p.pixels for p in parts]),
            np.concatenate(ids),
            *(np.concatenate([getattr(p, k) for p in parts]) for k in ("lengths", "label_a", "label_b", "rows")),
            text_features=features,
            blank=blank,
        )

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


def text_width(longest: int, widths: tuple[int, ...] = ()) -> int:
    """The token width of a batch whose longest caption has `longest` tokens: that length, or the
    smallest of `widths` that holds it (a few fixed shapes, so a compiled model traces a few graphs
    instead of one per caption length)."""
    return next((w for w in sorted(widths) if w >= longest), max(longest, 1))


def length_buckets(max_length: int, count: int = 3) -> tuple[int, ...]:
    """`count` widths halving down from max_length (128: 32, 64, 128), none below 8."""
    return tuple(sorted({max(8, max_length >> shift) for shift in range(count)}))


def collate(batch, widths: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    """Tensors for the model; text trimmed to the longest caption in the batch, or padded up to
    one of `widths` (text_width). Pixels held on a device stay there."""
    if isinstance(batch, list):  # rows fetched one by one
        batch = {k: np.concatenate([row[k] for row in batch]) for k in batch[0]}
    width = text_width(int(batch["lengths"].max()), widths)
    ids = np.ascontiguousarray(batch["input_ids"][:, :width])
    if ids.shape[1] < width:  # a fixed width past the cache's own (max_caption_length) is padding
        ids = np.pad(ids, ((0, 0), (0, width - ids.shape[1])))
    input_ids = torch.from_numpy(ids).long()
    positions = torch.arange(width).unsqueeze(0)
    tensors = {
        "input_ids": input_ids,
        "attention_mask": (positions < torch.from_numpy(batch["lengths"]).long().unsqueeze(1)).long(),
        "pixel_values": pixels
        if isinstance(pixels := batch["pixel_values"], torch.Tensor)
        else torch.from_numpy(np.ascontiguousarray(pixels)),
        "label_a": torch.from_numpy(batch["label_a"]),
        "label_b": torch.from_numpy(batch["label_b"]),
    }
    if "text_features" in batch:
        tensors["text_features"] = torch.from_numpy(np.ascontiguousarray(batch["text_features"]))
    if "blank" in batch:
        tensors["blank_image"] = torch.from_numpy(np.ascontiguousarray(batch["blank"]))
    return tensors


def with_text_features(
    cached: CachedSplit, model, batch_size: int = 256, desc: str | None = "text features"
) -> CachedSplit:
    """The split with its text tower's pooled output attached (cache.text.text_features: once per
    distinct caption) instead of computed once per row and epoch or batch. desc: the progress
    bar's label, None for none."""
    features = text_features(model, cached.input_ids, cached.lengths, batch_size, desc=desc)
    return dataclasses.replace(cached, text_features=features)
