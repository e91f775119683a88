"""The study's splits: train, validation, test and the unlabelled pool from a data spec's sources,
every split drawn by caption (a caption comes with six images, so a row-level split leaks)."""

from __future__ import annotations

import datasets
import numpy as np

from helpers.data.schema import DataError
from helpers.data.sources import load_source, loaded_revision
from helpers.data.spec import DataSpec
from helpers.labels import UNLABELLED

VALIDATION_ALIASES = ("validation", "val", "valid", "dev")


def normalised_captions(captions) -> np.ndarray:
    """Captions as keys that survive re-releases: lower case, runs of white space as one space,
    no surrounding spaces or final full stop; a missing caption is empty text."""
    return np.array([" ".join(str(c or "").lower().split()).rstrip(".").strip() for c in captions], dtype=object)


def caption_mask(captions, count: int, seed: int) -> np.ndarray:
    """True on the rows of `count` distinct captions drawn at random: every split of this study
    keeps a caption's rows together, since a caption appears under all six classes."""
    from sklearn.model_selection import GroupShuffleSplit

    captions = np.asarray(captions, dtype=object)
    mask = np.zeros(len(captions), bool)
    n_unique = len(set(captions))
    if count >= n_unique:
        mask[:] = count > 0
    elif count > 0:
        _, drawn = next(
            GroupShuffleSplit(n_splits=1, test_size=count, random_state=seed).split(captions, groups=captions)
        )
        mask[drawn] = True
    return mask


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


def load_splits(spec: DataSpec) -> tuple[datasets.DatasetDict, dict]:
    """(train, validation, and when configured test (labelled) and unlabelled; the revisions
    loaded, for provenance). Every process loads them itself: downloads, the datasets cache and the
    synthetic set are written under file locks, so several processes never wait in a collective here."""
    synthetic = {
        "captions": dict(spec.synthetic_captions),
        "image_size": spec.synthetic_image_size,
        "seed": spec.draw_seed,
    }
    source = load_source(spec.dataset, synthetic, spec.data_dir, spec.dataset_revision)
    revisions = {
        "dataset": {
            "source": spec.dataset,
            "requested": spec.dataset_revision or "latest",
            "loaded": loaded_revision(spec.dataset, spec.dataset_revision, source),
        }
    }
    if spec.train_split not in source:
        raise DataError(f"data set '{spec.dataset}' has no split '{spec.train_split}'; it has {list(source)}")
    out = {"train": source[spec.train_split]}
    val_name = next((n for n in (spec.val_split, *VALIDATION_ALIASES) if n and n in source), None)
    if val_name is None:
        print(f"no validation split in '{spec.dataset}': holding out {spec.val_fraction:.0%} of the train captions")
        out["train"], out["validation"] = split_by_caption(out["train"], spec.val_fraction, spec.draw_seed)
    else:
        out["validation"] = source[val_name]
    if spec.test_split:
        if spec.test_split not in source:
            raise DataError(
                f"test_split '{spec.test_split}' is not in '{spec.dataset}' (splits: {list(source)}); "
                "set test_split: '' when there is none"
            )
        out["test"] = source[spec.test_split]
    if spec.unlabelled_split:
        pool = source
        if spec.unlabelled_dataset:
            pool = load_source(spec.unlabelled_dataset, synthetic, spec.data_dir, spec.unlabelled_revision)
            revisions["unlabelled_dataset"] = {
                "source": spec.unlabelled_dataset,
                "requested": spec.unlabelled_revision or "latest",
                "loaded": loaded_revision(spec.unlabelled_dataset, spec.unlabelled_revision, pool),
            }
        if spec.unlabelled_split not in pool:
            raise DataError(
                f"unlabelled_split '{spec.unlabelled_split}' is not in "
                f"'{spec.unlabelled_dataset or spec.dataset}' (splits: {list(pool)})"
            )
        out["unlabelled"] = pool[spec.unlabelled_split]
    for name in ("train", "validation"):
        if not is_labelled(out[name]):
            raise DataError(f"the {name} split needs Label_A and Label_B on every row")
    out = {name: limit_captions(split, spec.max_captions_per_split, spec.draw_seed) for name, split in out.items()}
    return datasets.DatasetDict(out), revisions
