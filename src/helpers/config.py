"""One typed configuration per profile, read from a YAML file in params/.

Every key of a profile is a field here; an unknown key or a value of the wrong type is
rejected before any work starts, naming the key. Overrides (`--set key=value`, a notebook's
`overrides`) are held to the same rules. Notebooks receive only the profile and the overrides,
so the YAML file stays the one source of values.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CHOICES = {
    "text_init": ("pretrained", "random"),
    "vision_init": ("pretrained", "random"),
    "vision_input": ("pixels", "npr"),
    "text_pooling": ("pooler", "cls", "mean"),
    "loss_condition": ("label", "pred"),
    "bad_images": ("skip", "error", "zero"),
    "pseudo_confidence": ("hierarchical", "six_class"),
    "pseudo_split": ("captions", "rows"),
    "task_b_decoding": ("hierarchical", "six_class", "caption_groups"),
    "metric_for_best": ("f1_a", "f1_a_weighted", "acc_a", "f1_b_weighted", "acc_b"),
    "modality": ("both", "text", "image"),
    "fusion": ("concat", "attention"),
    "pseudo_balance": ("none", "class_quota"),
    "resume": ("fresh", "auto"),
    "pool_overlap": ("drop", "keep"),
}
ANALYSES = ("audit", "robustness", "ablation", "unseen", "calibration", "seeds", "baselines", "beyond")
# The notebook of each analysis (the runner starts it only when the profile's analyses name it).
ANALYSIS_NOTEBOOKS = {"audit": "05_shortcut_audit", "robustness": "06_robustness", "ablation": "07_modality_ablation",
                      "unseen": "08_unseen_generators", "calibration": "09_calibration", "seeds": "10_seeds",
                      "baselines": "12_baselines", "beyond": "13_beyond_the_paper"}
SPLITS = ("train", "validation", "test", "unlabelled")


class ConfigError(ValueError):
    """A profile that cannot be run as written."""


@dataclass(frozen=True)
class Config:
    profile: str
    seed: int = 42

    # Data: "synthetic" (the embedded mini-CT2), a hub id, or a local path.
    dataset: str = "synthetic"
    # A hub data set's revision (branch, tag or commit; "" = the latest). provenance.json records the
    # commit actually loaded.
    dataset_revision: str = ""
    train_split: str = "train"
    # Carved out of train by caption (val_fraction) when the source has no such split.
    val_split: str = "validation"
    val_fraction: float = 0.1
    # A labelled held-out split for the final numbers; "" when there is none.
    test_split: str = "test"
    # The pool that pseudo-labelling predicts; "" disables pseudo-labelling.
    unlabelled_dataset: str = ""
    unlabelled_split: str = ""
    unlabelled_revision: str = ""
    # Pool rows whose caption (normalised) or image is also in train, validation or a scored test
    # split: "drop" (a clean, inductive setup) or "keep" (the authors' transductive setup: they
    # pseudo-label the very test images they submit). The counts are reported either way.
    pool_overlap: str = "drop"
    # 0 keeps every row; a positive number keeps that many captions per split (all six classes each).
    max_captions_per_split: int = 0
    # An unreadable image: "skip" (listed, left out of training and metrics), "error" (stop), or
    # "zero" (listed, and replaced by the all-zero model input, as the authors' code does).
    # Prediction files and the competition JSON have a row for every input whatever the choice.
    bad_images: str = "skip"
    synthetic_captions: dict = field(default_factory=lambda: {"train": 300, "validation": 60, "test": 100, "unlabelled": 100})
    synthetic_image_size: int = 96

    # Model.
    text_encoder: str = "bert-base-uncased"
    text_init: str = "pretrained"
    text_config: dict = field(default_factory=dict)
    text_pooling: str = "pooler"
    # Where the tokenizer comes from; "" = the text encoder's own (needed when that is a bare model type).
    tokenizer: str = ""
    vision_encoder: str = "openai/clip-vit-base-patch32"
    vision_init: str = "pretrained"
    vision_config: dict = field(default_factory=dict)
    # What the vision tower sees: "pixels" (the paper), or "npr", the neighbouring-pixel residual
    # x - NN-upsample(x[::2, ::2]) of Tan et al. (CVPR 2024): the traces up-sampling leaves, with the
    # image content taken out, which a small tower from random weights learns within a CPU budget.
    vision_input: str = "pixels"
    # Input side for a random vision tower whose config has no image_size (CNNs); 0 = from the config.
    image_size: int = 0
    fusion_dim: int = 512
    # concat (the paper) or attention: the caption's pooled vector attends over the image's patch
    # states before the fusion layer (modeling/fusion.py; the paper's future work).
    fusion: str = "concat"
    # "text" or "image" zeroes the other tower's features (the modality ablation); "both" is the paper.
    modality: str = "both"
    dropout: float = 0.0
    freeze_text: bool = False
    freeze_vision: bool = False
    max_caption_length: int = 128
    # The text the tokenizer sees ("{}" = the caption as is) on the splits named in template_splits
    # (the authors prefix "Caption: " on train and validation only, not on the pool or the test set).
    caption_template: str = "{}"
    template_splits: list = field(default_factory=lambda: ["train", "validation", "test", "unlabelled"])

    # Training (HF Trainer semantics).
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    batch_size: int = 256
    eval_batch_size: int = 256
    epochs: int = 8
    warmup_ratio: float = 0.0
    metric_for_best: str = "f1_a_weighted"
    loss_condition: str = "label"
    # Task B's answer: "hierarchical" (real when A says real, else the best AI class),
    # "six_class" (argmax over all six classes, then real where A says real; the authors' test files) or
    # "caption_groups" (past the paper: the six images of a caption assigned to the six classes jointly
    # wherever captions are at hand, hierarchical per image elsewhere; it uses the set's structure).
    task_b_decoding: str = "hierarchical"
    bf16: bool = True
    # TF32 matrix multiplies and convolutions on CUDA (Ampere and newer); applied as written, also
    # under torch_compile, and recorded in provenance. No effect on a CPU.
    tf32: bool = True
    torch_compile: bool = False
    num_workers: int = 0
    # Where the Trainer logs: "none", or an integration it knows ("tensorboard" when installed, ...).
    report_to: str = "none"
    # batch_size is the global batch. Processes for the training stages (notebooks launch torchrun
    # when > 1); the most rows one device takes per step before gradient accumulation (0 = no limit).
    processes: int = 1
    per_device_max_batch: int = 0
    # "fresh": start every stage anew. "auto": continue a stage from its last complete checkpoint, skip a stage already finished.
    resume: str = "fresh"
    # Seconds a process waits in a collective (the Trainer's ddp_timeout; also the wait for the main
    # process's pseudo-label round). Caches are built under file locks, outside any collective.
    ddp_timeout: int = 1800

    # Pseudo-labelling.
    pseudo_threshold: float = 0.8
    pseudo_train_fraction: float = 0.8
    # Task B's confidence and label for the selection: "hierarchical" (as decoded) or "six_class"
    # (top softmax probability over all six classes, label = its argmax; the authors' code).
    pseudo_confidence: str = "hierarchical"
    # The 8:2 split of the kept rows: "captions" (a caption's rows on one side) or "rows" (rows at
    # random, as datasets' train_test_split(test_size=0.2, seed=seed) in the authors' code).
    pseudo_split: str = "captions"
    # Past the paper (its third direction; study/beyond.py): "class_quota" keeps, per predicted class,
    # the most confident passing rows up to the count of the class with the fewest, so no generator
    # dominates the added rows; group_check drops a pool row whose complete caption group, decoded
    # jointly, gives it another class than its own prediction (the group disagrees with itself).
    pseudo_balance: str = "none"
    pseudo_group_check: bool = False

    # Analyses after the evaluation (notebooks 05+): which to run, the epochs of their extra trainings
    # (ablation, leave-one-generator-out, seeds; 0 = epochs), and the seeds of the seed study.
    analyses: list = field(default_factory=lambda: list(ANALYSES))
    analysis_epochs: int = 0
    # Keep the analyses' trained models on disk (runs/<profile>/analysis_models), so a notebook that
    # asks for a training another one did (the ablation's fused model is the seed study's) loads it.
    # Off at paper scale: a model is about 0.8 GB; the analyses keep their metrics either way.
    keep_analysis_models: bool = True
    # The robustness curves and the shortcut audit's neutral view re-decode every image they score,
    # once per level: a positive number scores that many captions of the evaluation split there
    # (all six images each; 0 = every row).
    view_captions: int = 0
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    # Labelled sets from outside the training distribution, scored by notebook 11: each
    # {name, source}, source a labelled folder (real/, ai/<generator>/), a CSV with label_a, a data
    # set with labels, or "synthetic" (an outside set built by helpers.synthetic; captions: its size).
    external: list = field(default_factory=list)

    # Where things go.
    work_dir: str = "runs"
    report_dir: str = "reports"
    notebook_timeout: int = 3600
    # helpers.run: notebooks 01-03 run in order; from 04 on (each reads the trained stages and writes
    # its own part of the report) this many run side by side, each kernel with cores / lanes torch
    # threads. 1 = one after another with every core. On a CPU two lanes finish sooner, because a
    # small model's step does not use two cores fully; on one GPU keep 1 (two trainings share its memory).
    notebook_lanes: int = 1

    @property
    def run_dir(self) -> Path:
        return Path(self.work_dir) / self.profile

    @property
    def reports(self) -> Path:
        return Path(self.report_dir) / self.profile

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


def _type_ok(value, expected) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, expected)


def from_dict(values: dict) -> Config:
    """Validate every key and type, then build the config."""
    hints = typing.get_type_hints(Config)
    known = set(field_names())
    unknown = sorted(set(values) - known)
    if unknown:
        import difflib

        hints_of = [f"'{k}' (did you mean '{close[0]}'?)" if (close := difflib.get_close_matches(k, known, 1)) else f"'{k}'"
                    for k in unknown]
        raise ConfigError(f"unknown key(s) {', '.join(hints_of)}; valid keys are: {sorted(known)}")
    if "profile" not in values:
        raise ConfigError("the key 'profile' is required (the name of the run)")
    for key, value in values.items():
        if not _type_ok(value, hints[key]):
            raise ConfigError(
                f"key '{key}' must be of type {hints[key].__name__}, got {type(value).__name__} ({value!r})"
            )
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"key '{key}' must be one of {CHOICES[key]}, got {value!r}")
    cleaned = {k: float(v) if hints[k] is float else v for k, v in values.items()}
    config = Config(**cleaned)
    _check_ranges(config)
    return config


def _check_ranges(config: Config) -> None:
    unknown = sorted(set(config.analyses) - set(ANALYSES))
    if unknown:
        raise ConfigError(f"key 'analyses' has unknown entries {unknown}; choose from {list(ANALYSES)}")
    unknown = sorted(set(config.template_splits) - set(SPLITS))
    if unknown:
        raise ConfigError(f"key 'template_splits' has unknown entries {unknown}; choose from {list(SPLITS)}")
    if config.caption_template.count("{}") != 1:
        raise ConfigError(f"key 'caption_template' must contain '{{}}' exactly once (where the caption goes), "
                          f"got {config.caption_template!r}")
    for i, entry in enumerate(config.external):
        if not isinstance(entry, dict) or not {"name", "source"} <= set(entry) or set(entry) - {"name", "source", "captions"}:
            raise ConfigError(f"key 'external' entry {i} must be a mapping with name and source (and optionally captions), "
                              f"got {entry!r}")
        if not all(isinstance(entry[k], str) and entry[k] for k in ("name", "source")):
            raise ConfigError(f"key 'external' entry {i}: name and source must be non-empty text, got {entry!r}")
    if config.fusion == "attention" and config.modality != "both":
        raise ConfigError(f"fusion: attention needs both towers (modality: both), got modality: {config.modality}")
    for split, count in config.synthetic_captions.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ConfigError(f"key 'synthetic_captions': split '{split}' must have a whole number of captions, at least 1 "
                              f"(each gives six images), got {count!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in config.seeds):
        raise ConfigError(f"key 'seeds' must be a list of integers, got {config.seeds}")
    for key in ("pseudo_threshold", "pseudo_train_fraction"):
        if not 0.0 < getattr(config, key) <= 1.0:
            raise ConfigError(f"key '{key}' must lie in (0, 1], got {getattr(config, key)}")
    if not 0.0 < config.val_fraction < 1.0:
        raise ConfigError(f"key 'val_fraction' must lie in (0, 1), got {config.val_fraction}")
    if config.per_device_max_batch < 0:
        raise ConfigError(f"key 'per_device_max_batch' must be 0 (no limit) or positive, got {config.per_device_max_batch}")
    for key in ("batch_size", "eval_batch_size", "epochs", "fusion_dim", "max_caption_length", "processes", "ddp_timeout",
                "notebook_lanes"):
        if getattr(config, key) < 1:
            raise ConfigError(f"key '{key}' must be at least 1, got {getattr(config, key)}")


def load_config(source: str | Path | dict, overrides: dict | None = None) -> Config:
    """A config from a YAML path or an already-parsed mapping, with overrides applied on top;
    the result is validated as a whole, so an override is held to the same rules as the file."""
    if isinstance(source, dict):
        return from_dict({**source, **(overrides or {})})
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"profile file {path} does not exist; profiles live in params/*.yaml")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values")
    try:
        return from_dict({**values, **(overrides or {})})
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


