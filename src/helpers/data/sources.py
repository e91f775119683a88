"""Load any supported source into one DatasetDict of the normalised schema
(Caption, Image, Label_A, Label_B), then assemble the study's splits.

Sources: the embedded synthetic default, a hub id (long format such as
Rajarshi-Roy-research/Defactify_Image_Dataset, or the wide competition release
NasrinImp/Defactify4_Train), a saved DatasetDict or parquet folder, or a folder of
images with CSV files (one split per CSV). Unlabelled rows carry Label_A = Label_B = -1.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import datasets
import pandas as pd

from helpers.data.schema import DataError, _normalise_split, find_column, read_image_table, validate_labels
from helpers.data.synthetic import write_synthetic
from helpers.files import exclusive

# Bump when synthetic.py changes what it draws, so cached copies are rebuilt.
SYNTHETIC_VERSION = 6


def _from_csv(csv_path: Path) -> datasets.Dataset:
    frame, image_column, caption_column = read_image_table(csv_path)
    empty = [i for i, p in enumerate(frame[image_column]) if not p]
    if empty:
        raise DataError(f"{csv_path} row {empty[0]}: empty image path ({len(empty)} such rows)")
    if caption_column is None:
        frame["Caption"] = ""
    for target in ("Label_A", "Label_B"):
        column = find_column(frame.columns, target)
        if column is not None:
            numbers = pd.to_numeric(frame[column], errors="coerce")
            if numbers.isna().any():
                row = int(numbers.isna().to_numpy().argmax())
                raise DataError(
                    f"{csv_path} row {row}: {column} = {frame[column][row]!r} is not a number "
                    f"(0/1 for Label_A, 0-5 for Label_B)"
                )
            frame[column] = numbers.astype("int64")
    frame = frame.rename(columns={image_column: "Image"})
    dataset = datasets.Dataset.from_pandas(frame, preserve_index=False)
    return dataset.cast_column("Image", datasets.Image(decode=False))


def _read_local(path: Path) -> datasets.DatasetDict:
    if path.is_file() and path.suffix.lower() == ".csv":
        return datasets.DatasetDict({path.stem: _from_csv(path)})
    if (path / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(path))
    if (path / "dataset_info.json").is_file():
        return datasets.DatasetDict({"train": datasets.load_from_disk(str(path))})
    parquet = sorted(path.rglob("*.parquet"))
    if parquet:
        files: dict[str, list[str]] = {}
        for file in parquet:
            split = next((s for s in ("train", "validation", "val", "test") if file.name.startswith(s)), "train")
            files.setdefault(split, []).append(str(file))
        return datasets.load_dataset("parquet", data_files=files)
    csvs = sorted(path.glob("*.csv"))
    if csvs:
        return datasets.DatasetDict({csv.stem: _from_csv(csv) for csv in csvs})
    raise DataError(f"{path} is neither a saved data set, a parquet folder, nor a folder with CSV files")


def load_source(
    source: str, synthetic: dict | None = None, cache_root: str | Path = "runs/data", revision: str = ""
) -> datasets.DatasetDict:
    """Every split of a source, normalised to the schema and checked. revision: a hub data set's
    branch, tag or commit ("" = the latest)."""
    if source == "synthetic":
        raw = datasets.load_from_disk(str(ensure_synthetic(cache_root, **(synthetic or {}))))
    elif Path(source).exists():
        raw = _read_local(Path(source))
    elif source.startswith((".", "/")) or source.count("/") != 1:
        raise DataError(f"data source '{source}' is not a local path and not a hub id (owner/name)")
    else:
        raw = datasets.load_dataset(source, revision=revision or None)
    normalised = datasets.DatasetDict({name: _normalise_split(split, name) for name, split in raw.items()})
    for name, split in normalised.items():
        validate_labels(split, name)
    return normalised


def ensure_synthetic(cache_root: str | Path, captions: dict[str, int], image_size: int, seed: int) -> Path:
    """The synthetic set for these settings, written once and reused."""
    key = hashlib.sha256(
        json.dumps([captions, image_size, seed, SYNTHETIC_VERSION], sort_keys=True).encode()
    ).hexdigest()[:12]
    out = Path(cache_root) / f"synthetic-{key}"
    with exclusive(out):
        if not (out / "dataset_dict.json").is_file():
            write_synthetic(out, captions, image_size, seed)
    return out


def loaded_revision(source: str, revision: str, loaded: datasets.DatasetDict) -> str:
    """What was actually loaded: the hub commit (asked of the hub, else read off the datasets cache,
    whose folders are named by commit), the local path, or the synthetic set's version."""
    import re

    if source == "synthetic":
        return f"synthetic v{SYNTHETIC_VERSION}"
    if Path(source).exists():
        return f"local: {Path(source).resolve()}"
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(source, revision=revision or None).sha
    except Exception:  # noqa: BLE001 (offline: the cache's folder names carry the commit)
        files = [f["filename"] for split in loaded.values() for f in split.cache_files]
        found = {m for f in files for m in re.findall(r"/([0-9a-f]{40})/", f)}
        return found.pop() if len(found) == 1 else f"unknown (requested: {revision or 'latest'})"
