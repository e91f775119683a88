"""What loading the study's splits reads: the sources, their revisions and split names, how much
of them, and the seed of the draws. Each field is the profile key of its name (Config.data_spec)."""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataSpec:
    dataset: str
    dataset_revision: str
    train_split: str
    val_split: str
    val_fraction: float
    test_split: str
    unlabelled_dataset: str
    unlabelled_split: str
    unlabelled_revision: str
    max_captions_per_split: int
    synthetic_captions: dict
    synthetic_image_size: int
    draw_seed: int
    data_dir: Path
