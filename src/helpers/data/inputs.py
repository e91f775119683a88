"""What people point the detector at, as one list of inputs: a folder (optionally labelled by
`real/` and `ai/[<generator>/]` subfolders), a CSV with an image column (and optionally
label_a, generator, caption), or a data set the study's loader reads.

Every input becomes a row: the cell the image reader takes (a path, or a datasets cell), a
display name, a caption, and, when the source carries them, labels. A row whose label cannot
be read is kept and listed with its reason (bad_rows), never silently dropped.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.data.schema import find_column, read_image_table
from helpers.data.sources import load_source
from helpers.labels import CLASS_NAMES, UNLABELLED

REAL_NAMES, AI_NAMES = ("real",), ("ai", "fake", "generated")


@dataclass
class Inputs:
    """Row-aligned: cells (path strings or datasets cells), names, captions; label_a/label_b
    (-1 = unknown) and generator ('real', a generator's name, or '' unknown) when labelled."""

    cells: list
    names: list[str]
    captions: list[str]
    label_a: np.ndarray
    label_b: np.ndarray
    generator: list[str]
    labelled: bool = False
    bad_rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["index", "input", "reason"]))
    hidden_skipped: int = 0

    def __len__(self) -> int:
        return len(self.cells)

    def chunk(self, start: int, stop: int) -> list:
        """The cells of rows start..stop; a data set's rows are read only now (streaming)."""
        cells = self.cells[start:stop]
        return cells.column("Image").to_pylist() if hasattr(cells, "column") else list(cells)


def display_name(path: str | Path) -> str:
    """A path as text that any CSV or terminal takes: bytes that are not UTF-8 (a file name from
    another system) are shown as \\x escapes instead of breaking the output."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def ct2_class(generator: str) -> int | None:
    """The CT2 class a generator's name means ('SD 2.1', 'sd21', 'dall-e-3', 'midjourney_6', ...), or None."""
    key = re.sub(r"[^a-z0-9]", "", generator.lower())
    table = {re.sub(r"[^a-z0-9]", "", name.lower()): cls for cls, name in enumerate(CLASS_NAMES)}
    table.update({"coco": 0, "photo": 0, "midjourney": 5, "dalle": 4})
    return table.get(key)


def scan_folder(folder: Path) -> tuple[list[Path], int]:
    """(files below folder in sorted order, hidden files and folders skipped). Symbolic links are
    followed, each real folder once, so a link loop ends; a file reached twice by links is one
    input. Non-image files are kept: they are reported as failed, not silently left out."""
    folder = Path(folder)
    files, hidden, seen_dirs, seen_files = [], 0, set(), set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(real)
        hidden += sum(1 for d in dirs if d.startswith(".")) + sum(1 for n in names if n.startswith("."))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            path = Path(root) / name
            target = os.path.realpath(path)
            if target not in seen_files and os.path.isfile(target):
                seen_files.add(target)
                files.append(path)
            elif not os.path.exists(target):
                files.append(path)  # a dangling link: reported as an unreadable input
    return sorted(files), hidden


def _labels_from_folder(folder: Path, files: list[Path]) -> tuple[np.ndarray, list[str], list[dict]]:
    label_a, generators, bad = np.full(len(files), UNLABELLED, np.int64), [""] * len(files), []
    for i, path in enumerate(files):
        parts = path.relative_to(folder).parts
        top = parts[0].lower() if len(parts) > 1 else ""
        if top in REAL_NAMES:
            label_a[i], generators[i] = 0, "real"
        elif top in AI_NAMES:
            label_a[i], generators[i] = 1, parts[1] if len(parts) > 2 else "unknown"
        else:
            bad.append({"index": i, "input": display_name(path), "reason": "not under real/ or ai/: no label"})
    return label_a, generators, bad


def _label_b(label_a: np.ndarray, generators: list[str]) -> np.ndarray:
    """Label_B where the generator names a CT2 class (real = 0), else -1."""
    out = np.full(len(label_a), UNLABELLED, np.int64)
    for i, (a, name) in enumerate(zip(label_a, generators)):
        cls = 0 if a == 0 else ct2_class(name) if a == 1 else None
        if cls is not None and (cls == 0) == (a == 0):
            out[i] = cls
    return out


def from_folder(folder: Path) -> Inputs:
    files, hidden = scan_folder(folder)
    if not files:
        raise FileNotFoundError(f"no files under {folder}")
    subfolders = {p.name.lower() for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith(".")}
    labelled = bool(subfolders & set(REAL_NAMES + AI_NAMES))
    label_a, generators, bad = (
        _labels_from_folder(folder, files)
        if labelled
        else (np.full(len(files), UNLABELLED, np.int64), [""] * len(files), [])
    )
    return Inputs(
        [str(f) for f in files],
        [display_name(f) for f in files],
        [""] * len(files),
        label_a,
        _label_b(label_a, generators),
        generators,
        labelled,
        pd.DataFrame(bad, columns=["index", "input", "reason"]),
        hidden,
    )


LABEL_WORDS = {"0": 0, "1": 1, "real": 0, "ai": 1, "fake": 1, "generated": 1, "0.0": 0, "1.0": 1}


def from_csv(csv: Path) -> Inputs:
    frame, image, caption = read_image_table(csv)
    label_column = find_column(frame.columns, "Label_A")
    generator_column = next((c for c in frame.columns if c.lower() in ("generator", "source", "model")), None)
    paths = list(frame[image])
    label_a, generators, bad = np.full(len(frame), UNLABELLED, np.int64), [""] * len(frame), []
    if label_column is not None:
        for i, raw in enumerate(frame[label_column]):
            value = LABEL_WORDS.get(str(raw).strip().lower())
            if value is None:
                bad.append(
                    {"index": i, "input": paths[i] or f"row {i}", "reason": f"label_a {raw!r} is not 0/1 or real/ai"}
                )
                continue
            label_a[i] = value
            generators[i] = (
                "real" if value == 0 else (frame[generator_column][i] if generator_column else "") or "unknown"
            )
    return Inputs(
        paths,
        [p or f"{csv.name} row {i}" for i, p in enumerate(paths)],
        list(frame[caption]) if caption else [""] * len(frame),
        label_a,
        _label_b(label_a, generators),
        generators,
        label_column is not None,
        pd.DataFrame(bad, columns=["index", "input", "reason"]),
    )


def from_dataset(path: str, split: str | None) -> Inputs:
    import datasets

    source = load_source(path)
    name = split or ("test" if "test" in source else next(iter(source)))
    if name not in source:
        raise KeyError(f"split '{name}' is not in {path} (splits: {list(source)})")
    chosen = source[name].cast_column("Image", datasets.Image(decode=False))
    label_a, label_b = np.asarray(chosen["Label_A"], np.int64), np.asarray(chosen["Label_B"], np.int64)
    generators = ["" if b == UNLABELLED else CLASS_NAMES[b] for b in label_b]
    cells = chosen.select_columns(["Image"]).with_format("arrow")  # rows stay in Arrow until a chunk is read
    paths = cells[:].column("Image").combine_chunks().field("path").to_pylist()
    return Inputs(
        cells,
        [p or f"{name}[{i}]" for i, p in enumerate(paths)],
        list(chosen["Caption"]),
        label_a,
        label_b,
        generators,
        bool(len(label_a)) and bool((label_a != UNLABELLED).all()),
    )


def read_inputs(source: str | Path, split: str | None = None) -> Inputs:
    """The inputs of a folder, a CSV, or a data set (see the module docstring)."""
    path = Path(source)
    saved = path.is_dir() and (
        (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file() or any(path.rglob("*.parquet"))
    )
    if path.is_dir() and not saved:
        return from_folder(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return from_csv(path)
    return from_dataset(str(source), split)


def encoded_bytes(cell) -> tuple[bytes, str]:
    """(the file's bytes, its extension) of a datasets Image cell (decode=False): embedded bytes,
    or the file a path names (CSV and folder data sets keep only the path)."""
    from PIL import Image

    raw = cell.get("bytes") or (Path(cell["path"]).read_bytes() if cell.get("path") else b"")
    try:
        return raw, Image.open(io.BytesIO(raw)).format.lower()
    except (OSError, AttributeError):  # written as it is: the prediction command reports it unreadable
        return raw, "bin"


def write_samples(split, folder: str | Path, per_class: int = 2) -> Path:
    """The first `per_class` rows of each class of a labelled split, written as ordinary files in
    folder, and the CSV beside it (folder.csv: image, caption, row): `helpers.predict --images
    folder.csv` scores them with their captions, as the study does (the dual encoder never saw an
    empty caption in training). Returns the CSV's path."""
    import datasets

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    split = split.cast_column("Image", datasets.Image(decode=False))
    labels_b = np.asarray(split["Label_B"])
    rows = []
    for cls, name in enumerate(CLASS_NAMES):
        for row in np.flatnonzero(labels_b == cls)[:per_class]:
            item = split[int(row)]
            raw, extension = encoded_bytes(item["Image"])
            path = folder / f"{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')}_{row}.{extension}"
            path.write_bytes(raw)
            rows.append({"image": f"{folder.name}/{path.name}", "caption": item["Caption"], "row": int(row)})
    listing = folder.with_suffix(".csv")
    pd.DataFrame(rows, columns=["image", "caption", "row"]).to_csv(listing, index=False)
    return listing
