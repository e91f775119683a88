"""The study's one schema (Caption, Image, Label_A, Label_B): the columns any source is renamed
to, the wide competition layout unfolded to long rows, and the label checks."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from helpers.labels import NUM_CLASSES, UNLABELLED

FEATURES = datasets.Features(
    {
        "Caption": datasets.Value("string"),
        "Image": datasets.Image(decode=False),
        "Label_A": datasets.Value("int64"),
        "Label_B": datasets.Value("int64"),
    }
)


# The wide competition release: one row per caption, one image column per class (in class order).
WIDE_IMAGE_COLUMNS = ("coco_image", "sd21_image", "sdxl_image", "sd3_image", "dalle_image", "midjourney_image")


ALIASES = {
    "Caption": ("caption", "text", "prompt"),
    "Image": ("image", "img", "path", "file", "image_path", "filepath"),
    "Label_A": ("label_a",),
    "Label_B": ("label_b",),
}


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
        raise DataError(
            f"split '{name}' has no image column (looked for Image, {', '.join(ALIASES['Image'])}); "
            f"its columns are {split.column_names}"
        )
    if "Caption" not in split.column_names:
        raise DataError(
            f"split '{name}' has no caption column (looked for Caption, {', '.join(ALIASES['Caption'])}); "
            f"add one (empty strings are allowed); its columns are {split.column_names}"
        )
    return split


def _normalise_split(split: datasets.Dataset, name: str) -> datasets.Dataset:
    if _is_wide(split.column_names):
        lower = {c.lower(): c for c in split.column_names}
        split = split.rename_columns({v: k for k, v in lower.items() if k != v})
        for column in WIDE_IMAGE_COLUMNS:
            split = split.cast_column(column, datasets.Image(decode=False))
        split = split.map(
            wide_to_long,
            batched=True,
            remove_columns=split.column_names,
            features=FEATURES,
            desc=f"wide to long ({name})",
        )
        return split
    split = _rename_to_schema(split, name)
    has_a, has_b = "Label_A" in split.column_names, "Label_B" in split.column_names
    if has_b and not has_a:
        split = split.map(
            lambda b: {"Label_A": [int(x != 0) if x != UNLABELLED else UNLABELLED for x in b["Label_B"]]},
            batched=True,
            desc=f"Label_A from Label_B ({name})",
        )
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
        raise DataError(
            f"split '{name}' row {bad_b[0]}: Label_B = {label_b[bad_b[0]]} is outside 0-{NUM_CLASSES - 1} "
            f"({bad_b.size} such rows); fix the labels or map them to the CT2 classes"
        )
    bad_a = np.flatnonzero(~np.isin(label_a, (0, 1, UNLABELLED)))
    if bad_a.size:
        raise DataError(f"split '{name}' row {bad_a[0]}: Label_A = {label_a[bad_a[0]]} must be 0 (real) or 1 (AI)")
    known = (label_a != UNLABELLED) & (label_b != UNLABELLED)
    clash = np.flatnonzero(known & (label_a != (label_b != 0)))
    if clash.size:
        raise DataError(
            f"split '{name}' row {clash[0]}: Label_A = {label_a[clash[0]]} contradicts "
            f"Label_B = {label_b[clash[0]]} (Label_A must be 1 exactly when Label_B is not 0)"
        )


def read_image_table(csv: Path) -> tuple[pd.DataFrame, str, str | None]:
    """A CSV that names images, the one way this package reads one: (its rows as text, no value
    read as missing; the image column, each path resolved against the CSV's folder, an empty one
    kept empty; the caption column or None). A CSV without an image column is refused."""
    csv = Path(csv)
    frame = pd.read_csv(csv, keep_default_na=False, dtype=str)
    image = find_column(frame.columns, "Image")
    if image is None:
        raise DataError(
            f"{csv} has no image column (one of image, {', '.join(ALIASES['Image'])}); "
            f"its columns are {list(frame.columns)}"
        )
    frame[image] = [str((csv.parent / p).resolve()) if p else "" for p in frame[image]]
    return frame, image, find_column(frame.columns, "Caption")
