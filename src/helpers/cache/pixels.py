"""Pixels on disk: a cache's file of uint8 rows read with positioned reads (MappedPixels), views that
index several such files without copying (PixelView), and handing back the pages of memory-mapped
source files once read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


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
                out[run[0] : run[-1] + 1] = np.frombuffer(data, np.uint8).reshape(len(run), -1)
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
        return PixelView(
            [s for v in views for s in v.sources],
            np.concatenate([v.source_of + o for v, o in zip(views, offsets)]),
            np.concatenate([v.row_of for v in views]),
        )

    def describe(self) -> list:
        """What the view reads, for fingerprints: each source's cache folder (or content hash), and the rows."""
        names = [
            Path(s.path).parent.name
            if isinstance(s, MappedPixels)
            else hashlib.sha256(np.ascontiguousarray(s).tobytes()).hexdigest()[:16]
            for s in self.sources
        ]
        rows = hashlib.sha256(self.source_of.tobytes() + self.row_of.tobytes()).hexdigest()[:16]
        return [names, rows]


class DevicePixels:
    """Every pixel row of a split in one uint8 tensor on a device (the training GPU), a batch
    gathered there by index: no loader process, no pinned copy and no host-to-device transfer per
    step. The paper's train split as cached (42k x 3 x 224 x 224, 6.3 GB) fits an H100's memory
    many times over; on_device() decides when (see training.trainer.device_cache)."""

    def __init__(self, tensor):
        self.tensor = tensor

    @classmethod
    def load(cls, pixels, device, chunk_rows: int = 2048) -> "DevicePixels":
        """The rows of `pixels` (a PixelView or an array) copied to `device` chunk by chunk, so the
        host never holds more than a chunk of them."""
        import torch

        tensor = torch.empty(tuple(pixels.shape), dtype=torch.uint8, device=device)
        for start in range(0, len(pixels), chunk_rows):
            rows = np.arange(start, min(start + chunk_rows, len(pixels)))
            tensor[start : rows[-1] + 1].copy_(torch.from_numpy(np.ascontiguousarray(pixels[rows])))
        return cls(tensor)

    def __len__(self) -> int:
        return len(self.tensor)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    dtype = np.dtype(np.uint8)

    def __getitem__(self, indices):
        return self.tensor[device_index(indices, self.tensor.device)]


def device_index(indices, device):
    """A batch's row indices on `device`. To a GPU they go from pinned memory without blocking: a copy
    from pageable memory would make the host wait for the GPU at every training step."""
    import torch

    index = torch.from_numpy(np.asarray(indices, np.int64))
    if device.type != "cuda":
        return index.to(device)
    return index.pin_memory().to(device, non_blocking=True)


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
