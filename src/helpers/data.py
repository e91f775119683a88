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
import numpy as np
import pandas as pd

from .labels import NUM_CLASSES, UNLABELLED
from .locking import exclusive

FEATURES = datasets.Features({
    "Caption": datasets.Value("string"),
    "Image": datasets.Image(decode=False),
    "Label_A": datasets.Value("int64"),
    "Label_B": datasets.Value("int64"),
})
# The wide competition release: one row per caption, one image column per class (in class order).
WIDE_IMAGE_COLUMNS = ("coco_image", "sd21_image", "sdxl_image", "sd3_image", "dalle_image", "midjourney_image")
ALIASES = {
    "Caption": ("caption", "text", "prompt"),
    "Image": ("image", "img", "path", "file", "image_path", "filepath"),
    "Label_A": ("label_a",),
    "Label_B": ("label_b",),
}
VALIDATION_ALIASES = ("validation", "val", "valid", "dev")
# Bump when synthetic.py changes what it draws, so cached copies are rebuilt.
SYNTHETIC_VERSION = 2


class DataError(ValueError):
    """A source that does not fit the schema; the message names the item and the fix."""


def wide_to_long(batch: dict[str, list]) -> dict[str, list]:
    """Six long rows (real, SD 2.1, SDXL, SD 3, DALL-E 3, Midjourney 6) per wide row."""
    out: dict[str, list] = {"Caption": [], "Image": [], "Label_A": [], "Label_B": []}
    for row, caption in enumerate(batch["caption"]):
        for label_b, column in enumerate(WIDE_IMAGE_COLUMNS):
            out["Caption"].append(caption)
            out["Image"].append(batch[column][row])
            out["Label_A"].append(int(label_b != 0))
            out["Label_B"].append(label_b)
    return out


def _is_wide(columns) -> bool:
    return set(WIDE_IMAGE_COLUMNS) <= {c.lower() for c in columns}


def find_column(columns, target: str) -> str | None:
    """The column that holds `target` (Caption, Image, Label_A, Label_B): its own name or an
    alias, case-insensitively; None when there is none."""
    lower = {c.lower(): c for c in columns}
    return next((lower[c] for c in (target.lower(), *ALIASES[target]) if c in lower), None)


def _rename_to_schema(split: datasets.Dataset, name: str) -> datasets.Dataset:
    found = {target: find_column(split.column_names, target) for target in ALIASES}
    renames = {column: target for target, column in found.items() if column is not None and column != target}
    split = split.rename_columns(renames) if renames else split
    if "Image" not in split.column_names:
        raise DataError(f"split '{name}' has no image column (looked for Image, {', '.join(ALIASES['Image'])}); "
                        f"its columns are {split.column_names}")
    if "Caption" not in split.column_names:
        raise DataError(f"split '{name}' has no caption column (looked for Caption, {', '.join(ALIASES['Caption'])}); "
                        f"add one (empty strings are allowed); its columns are {split.column_names}")
    return split


def _normalise_split(split: datasets.Dataset, name: str) -> datasets.Dataset:
    if _is_wide(split.column_names):
        lower = {c.lower(): c for c in split.column_names}
        split = split.rename_columns({v: k for k, v in lower.items() if k != v})
        for column in WIDE_IMAGE_COLUMNS:
            split = split.cast_column(column, datasets.Image(decode=False))
        split = split.map(wide_to_long, batched=True, remove_columns=split.column_names, features=FEATURES,
                          desc=f"wide to long ({name})")
        return split
    split = _rename_to_schema(split, name)
    has_a, has_b = "Label_A" in split.column_names, "Label_B" in split.column_names
    if has_b and not has_a:
        split = split.map(lambda b: {"Label_A": [int(x != 0) if x != UNLABELLED else UNLABELLED for x in b["Label_B"]]},
                          batched=True, desc=f"Label_A from Label_B ({name})")
    for column in ("Label_A", "Label_B"):
        if column not in split.column_names:
            split = split.add_column(column, [UNLABELLED] * len(split))
    extra = [c for c in split.column_names if c not in FEATURES]
    split = split.remove_columns(extra)
    split = split.cast_column("Image", datasets.Image(decode=False))
    # Column by column: a whole-table cast would rewrite every image's bytes to change two int columns.
    for column in ("Caption", "Label_A", "Label_B"):
        if split.features[column] != FEATURES[column]:
            split = split.cast_column(column, FEATURES[column])
    return split.select_columns(list(FEATURES))


def validate_labels(split: datasets.Dataset, name: str) -> None:
    """Labels in range and Task A consistent with Task B; unlabelled rows are -1 in both."""
    label_a = np.asarray(split["Label_A"])
    label_b = np.asarray(split["Label_B"])
    bad_b = np.flatnonzero((label_b != UNLABELLED) & ((label_b < 0) | (label_b >= NUM_CLASSES)))
    if bad_b.size:
        raise DataError(f"split '{name}' row {bad_b[0]}: Label_B = {label_b[bad_b[0]]} is outside 0-{NUM_CLASSES - 1} "
                        f"({bad_b.size} such rows); fix the labels or map them to the CT2 classes")
    bad_a = np.flatnonzero(~np.isin(label_a, (0, 1, UNLABELLED)))
    if bad_a.size:
        raise DataError(f"split '{name}' row {bad_a[0]}: Label_A = {label_a[bad_a[0]]} must be 0 (real) or 1 (AI)")
    known = (label_a != UNLABELLED) & (label_b != UNLABELLED)
    clash = np.flatnonzero(known & (label_a != (label_b != 0)))
    if clash.size:
        raise DataError(f"split '{name}' row {clash[0]}: Label_A = {label_a[clash[0]]} contradicts "
                        f"Label_B = {label_b[clash[0]]} (Label_A must be 1 exactly when Label_B is not 0)")


def _from_csv(csv_path: Path) -> datasets.Dataset:
    frame = pd.read_csv(csv_path, keep_default_na=False)
    image_column = find_column(frame.columns, "Image")
    if image_column is None:
        raise DataError(f"{csv_path} has no image column (one of image, {', '.join(ALIASES['Image'])}); "
                        f"its columns are {list(frame.columns)}")
    frame[image_column] = [str((csv_path.parent / p).resolve()) if p else "" for p in frame[image_column]]
    empty = [i for i, p in enumerate(frame[image_column]) if not p]
    if empty:
        raise DataError(f"{csv_path} row {empty[0]}: empty image path ({len(empty)} such rows)")
    if find_column(frame.columns, "Caption") is None:
        frame["Caption"] = ""
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


def load_source(source: str, synthetic: dict | None = None, cache_root: str | Path = "runs/data",
                revision: str = "") -> datasets.DatasetDict:
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
    from .synthetic import write_synthetic

    key = hashlib.sha256(json.dumps([captions, image_size, seed, SYNTHETIC_VERSION], sort_keys=True).encode()).hexdigest()[:12]
    out = Path(cache_root) / f"synthetic-{key}"
    with exclusive(out):
        if not (out / "dataset_dict.json").is_file():
            write_synthetic(out, captions, image_size, seed)
    return out



def normalised_captions(captions) -> np.ndarray:
    """Captions as keys that survive re-releases: lower case, runs of white space as one space,
    no surrounding spaces or final full stop; a missing caption is empty text."""
    return np.array([" ".join(str(c or "").lower().split()).rstrip(".").strip() for c in captions], dtype=object)


def caption_mask(captions, count: int, seed: int) -> np.ndarray:
    """True on the rows of `count` distinct captions drawn at random: every split of this study
    keeps a caption's rows together, since a caption appears under all six classes."""
    captions = np.asarray(captions, dtype=object)
    drawn = set(np.random.default_rng(seed).choice(np.unique(captions), size=count, replace=False))
    return np.array([c in drawn for c in captions], dtype=bool)


def split_by_caption(split: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(rest, held_out): held_out gets about `fraction` of the captions, with all their rows;
    no caption lands on both sides (a row-level split would leak the caption's other images)."""
    captions = split["Caption"]
    n_unique = len(set(captions))
    if n_unique < 2:
        raise DataError("cannot split by caption: the split has fewer than two distinct captions")
    held = caption_mask(captions, min(n_unique - 1, max(1, round(fraction * n_unique))), seed)
    return split.select(np.flatnonzero(~held)), split.select(np.flatnonzero(held))


def limit_captions(split: datasets.Dataset, max_captions: int, seed: int) -> datasets.Dataset:
    """The rows of at most max_captions captions (0 keeps all); an explicit, logged subsample."""
    captions = split["Caption"]
    n_unique = len(set(captions))
    if max_captions <= 0 or n_unique <= max_captions:
        return split
    print(f"max_captions_per_split: keeping {max_captions} of {n_unique} captions")
    return split.select(np.flatnonzero(caption_mask(captions, max_captions, seed)))


def is_labelled(split: datasets.Dataset) -> bool:
    return bool(len(split)) and UNLABELLED not in set(split.unique("Label_A"))


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


def study_splits(cfg) -> datasets.DatasetDict:
    """train, validation, and when configured test (labelled) and unlabelled. Every process
    loads them itself: downloads, the datasets cache and the synthetic set are written under file
    locks, so several processes never wait in a collective here. The revisions loaded go into
    runs/<profile>/record.json (section data) for provenance."""
    from .records import record

    synthetic = {"captions": dict(cfg.synthetic_captions), "image_size": cfg.synthetic_image_size, "seed": cfg.seed}
    cache_root = cfg.run_dir.parent / "data"
    source = load_source(cfg.dataset, synthetic, cache_root, cfg.dataset_revision)
    revisions = {"dataset": {"source": cfg.dataset, "requested": cfg.dataset_revision or "latest",
                             "loaded": loaded_revision(cfg.dataset, cfg.dataset_revision, source)}}
    if cfg.train_split not in source:
        raise DataError(f"data set '{cfg.dataset}' has no split '{cfg.train_split}'; it has {list(source)}")
    out = {"train": source[cfg.train_split]}
    val_name = next((n for n in (cfg.val_split, *VALIDATION_ALIASES) if n and n in source), None)
    if val_name is None:
        print(f"no validation split in '{cfg.dataset}': holding out {cfg.val_fraction:.0%} of the train captions")
        out["train"], out["validation"] = split_by_caption(out["train"], cfg.val_fraction, cfg.seed)
    else:
        out["validation"] = source[val_name]
    if cfg.test_split:
        if cfg.test_split not in source:
            raise DataError(f"test_split '{cfg.test_split}' is not in '{cfg.dataset}' (splits: {list(source)}); "
                            "set test_split: '' when there is none")
        out["test"] = source[cfg.test_split]
    if cfg.unlabelled_split:
        pool = source
        if cfg.unlabelled_dataset:
            pool = load_source(cfg.unlabelled_dataset, synthetic, cache_root, cfg.unlabelled_revision)
            revisions["unlabelled_dataset"] = {
                "source": cfg.unlabelled_dataset, "requested": cfg.unlabelled_revision or "latest",
                "loaded": loaded_revision(cfg.unlabelled_dataset, cfg.unlabelled_revision, pool)}
        if cfg.unlabelled_split not in pool:
            raise DataError(f"unlabelled_split '{cfg.unlabelled_split}' is not in "
                            f"'{cfg.unlabelled_dataset or cfg.dataset}' (splits: {list(pool)})")
        out["unlabelled"] = pool[cfg.unlabelled_split]
    for name in ("train", "validation"):
        if not is_labelled(out[name]):
            raise DataError(f"the {name} split needs Label_A and Label_B on every row")
    out = {name: limit_captions(split, cfg.max_captions_per_split, cfg.seed) for name, split in out.items()}
    record(cfg, "data", revisions)
    return datasets.DatasetDict(out)
