"""One typed configuration per profile, read from a YAML file in params/.

Every key of a profile is a field here; an unknown key or a value of the wrong type is
rejected before any work starts, naming the key. A profile file holds its keys in sections and
states only what differs from its base (helpers.profiles); a Config is flat (cfg.learning_rate),
as every stage reads keys across sections. The science library's functions take a spec instead
(cfg.model_spec, .data_spec, .training_spec): the keys one step reads, typed. Overrides
(`--set key=value`, a notebook's `overrides`) are held to the same rules. Notebooks receive only
the profile and the overrides, so the YAML file stays the one source of values.
"""

import dataclasses
import difflib
from dataclasses import field
from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import Field

from helpers.data.spec import DataSpec
from helpers.modeling.spec import ModelSpec
from helpers.profiles import SECTION_OF, TOP_LEVEL, ConfigError, read_profile
from helpers.training.spec import TrainingSpec

# Whole numbers of at least one, fractions in (0, 1]: checked with the key's name like its type.
Count = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
# The analyses a profile may name (helpers.analyses computes them; the engine gives each a rule).
ANALYSES = ("audit", "robustness", "ablation", "unseen", "calibration", "seeds", "baselines", "beyond")
SPLITS = ("train", "validation", "test", "unlabelled")
# The pseudo-label rules notebook 13 compares, by name: the (pseudo_balance, pseudo_group_check)
# each sets; the other pseudo-label keys as the profile has them.
PSEUDO_RULES = {
    "confidence >= threshold (the paper)": ("none", False),
    "class quota": ("class_quota", False),
    "caption-group check": ("none", True),
}


# pydantic checks every key's type (strictly: no "8" for 8, no 1 for true) and choice on creation,
# dataclasses.replace included; the checks across keys are Config.__post_init__'s.
@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(strict=True, extra="forbid"))
class Config:
    profile: str
    seed: int = 42

    # Data: "synthetic" (the embedded mini-CT2), a hub id, or a local path.
    dataset: str = "synthetic"
    # The seed that draws the synthetic data, a validation split carved out of train and a caption
    # limit (None: `seed`). The seed study trains from other seeds on the study's own draw of the data.
    data_seed: int | None = None
    # A hub data set's revision (branch, tag or commit; "" = the latest). provenance.json records the
    # commit actually loaded.
    dataset_revision: str = ""
    train_split: str = "train"
    # Carved out of train by caption (val_fraction) when the source has no such split.
    val_split: str = "validation"
    val_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    # A labelled held-out split for the final numbers; "" when there is none.
    test_split: str = "test"
    # The pool that pseudo-labelling predicts; "" disables pseudo-labelling.
    unlabelled_dataset: str = ""
    unlabelled_split: str = ""
    unlabelled_revision: str = ""
    # Pool rows whose caption (normalised) or image is also in train, validation or a scored test
    # split: "drop" (a clean, inductive setup) or "keep" (the authors' transductive setup: they
    # pseudo-label the very test images they submit). The counts are reported either way.
    pool_overlap: Literal["drop", "keep"] = "drop"
    # 0 keeps every row; a positive number keeps that many captions per split (all six classes each).
    max_captions_per_split: int = 0
    # An unreadable image: "skip" (listed, left out of training and metrics), "error" (stop), or
    # "zero" (listed, and replaced by the all-zero model input, as the authors' code does).
    # Prediction files and the competition JSON have a row for every input whatever the choice.
    bad_images: Literal["skip", "error", "zero"] = "skip"
    synthetic_captions: dict = field(
        default_factory=lambda: {"train": 300, "validation": 60, "test": 100, "unlabelled": 100}
    )
    synthetic_image_size: int = 96

    # Model.
    text_encoder: str = "bert-base-uncased"
    text_init: Literal["pretrained", "random"] = "pretrained"
    text_config: dict = field(default_factory=dict)
    text_pooling: Literal["pooler", "cls", "mean"] = "pooler"
    # Where the tokenizer comes from; "" = the text encoder's own (needed when that is a bare model type).
    tokenizer: str = ""
    vision_encoder: str = "openai/clip-vit-base-patch32"
    vision_init: Literal["pretrained", "random"] = "pretrained"
    vision_config: dict = field(default_factory=dict)
    # What the vision tower sees: "pixels" (the paper), or "npr", the neighbouring-pixel residual
    # x - NN-upsample(x[::2, ::2]) of Tan et al. (CVPR 2024): the traces up-sampling leaves, with the
    # image content taken out, which a small tower from random weights learns within a CPU budget.
    vision_input: Literal["pixels", "npr"] = "pixels"
    # Input side for a random vision tower whose config has no image_size (CNNs); 0 = from the config.
    image_size: int = 0
    fusion_dim: Count = 512
    # concat (the paper) or attention: the caption's pooled vector attends over the image's patch
    # states before the fusion layer (modeling/fusion.py; the paper's future work).
    fusion: Literal["concat", "attention"] = "concat"
    # "text" or "image" zeroes the other tower's features (the modality ablation); "both" is the paper.
    modality: Literal["both", "text", "image"] = "both"
    dropout: float = 0.0
    freeze_text: bool = False
    freeze_vision: bool = False
    max_caption_length: Count = 128
    # The text the tokenizer sees ("{}" = the caption as is) on the splits named in template_splits
    # (the authors prefix "Caption: " on train and validation only, not on the pool or the test set).
    caption_template: str = "{}"
    template_splits: list = field(default_factory=lambda: ["train", "validation", "test", "unlabelled"])

    # Training (HF Trainer semantics).
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    batch_size: Count = 256
    eval_batch_size: Count = 256
    epochs: Count = 8
    warmup_ratio: float = 0.0
    metric_for_best: Literal["f1_a", "f1_a_weighted", "acc_a", "f1_b_weighted", "acc_b"] = "f1_a_weighted"
    loss_condition: Literal["label", "pred"] = "label"
    # Generators (Label_B 1-5) whose rows are left out of train and validation: a model that has
    # never seen them (the leave-one-generator-out analysis trains one per generator so).
    held_out_classes: list[int] = field(default_factory=list)
    # Task B's answer: "hierarchical" (real when A says real, else the best AI class),
    # "six_class" (argmax over all six classes, then real where A says real; the authors' test files) or
    # "caption_groups" (past the paper: the six images of a caption assigned to the six classes jointly
    # wherever captions are at hand, hierarchical per image elsewhere; it uses the set's structure).
    task_b_decoding: Literal["hierarchical", "six_class", "caption_groups"] = "hierarchical"
    bf16: bool = True
    # TF32 matrix multiplies and convolutions on CUDA (Ampere and newer); applied as written, also
    # under torch_compile, and recorded in provenance. No effect on a CPU.
    tf32: bool = True
    torch_compile: bool = False
    num_workers: int = 0
    # Training on CUDA: "auto" holds the train and validation pixels on the GPU when they take at most
    # half of its free memory (batches gathered there: no loader processes, no copies per step);
    # "off" reads them from the cache with num_workers loader processes.
    device_cache: Literal["auto", "off"] = "auto"
    # Where the Trainer logs: "none", or an integration it knows ("tensorboard" when installed, ...).
    report_to: str = "none"
    # batch_size is the global batch. Processes for each training (the engine starts torchrun when
    # > 1); the most rows one device takes per step before gradient accumulation (0 = no limit).
    processes: Count = 1
    per_device_max_batch: Annotated[int, Field(ge=0)] = 0
    # "fresh": start every stage anew. "auto": continue a stage from its last complete checkpoint, skip a stage already finished.
    resume: Literal["fresh", "auto"] = "fresh"
    # Seconds a process waits in a collective (the Trainer's ddp_timeout; also the wait for the main
    # process's pseudo-label round). Caches are built under file locks, outside any collective.
    ddp_timeout: Count = 1800

    # Pseudo-labelling.
    pseudo_threshold: Fraction = 0.8
    pseudo_train_fraction: Fraction = 0.8
    # Task B's confidence and label for the selection: "hierarchical" (as decoded) or "six_class"
    # (top softmax probability over all six classes, label = its argmax; the authors' code).
    pseudo_confidence: Literal["hierarchical", "six_class"] = "hierarchical"
    # The 8:2 split of the kept rows: "captions" (a caption's rows on one side) or "rows" (rows at
    # random, as datasets' train_test_split(test_size=0.2, seed=seed) in the authors' code).
    pseudo_split: Literal["captions", "rows"] = "captions"
    # Past the paper (its third direction; study/beyond.py): "class_quota" keeps, per predicted class,
    # the most confident passing rows up to the count of the class with the fewest, so no generator
    # dominates the added rows; group_check drops a pool row whose complete caption group, decoded
    # jointly, gives it another class than its own prediction (the group disagrees with itself).
    pseudo_balance: Literal["none", "class_quota"] = "none"
    pseudo_group_check: bool = False

    # Analyses after the evaluation (notebooks 05+): which to run, the epochs of their extra trainings
    # (ablation, leave-one-generator-out, seeds; 0 = epochs), and the seeds of the seed study.
    analyses: list = field(default_factory=lambda: list(ANALYSES))
    analysis_epochs: int = 0
    # Keep the analyses' trained models (runs/<profile>/models) once every notebook that reads them
    # has run (false: the engine removes them then, and a notebook run again retrains what it reads).
    # Off at paper scale: a model is about 0.8 GB; the analyses keep their metrics either way.
    keep_analysis_models: bool = True
    # The robustness curves and the shortcut audit's neutral view re-decode every image they score,
    # once per level: a positive number scores that many captions of the evaluation split there
    # (all six images each; 0 = every row).
    view_captions: int = 0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    # Labelled sets from outside the training distribution, scored by notebook 11: each
    # {name, source}, source a labelled folder (real/, ai/<generator>/), a CSV with label_a, a data
    # set with labels, or "synthetic" (an outside set built by helpers.synthetic; captions: its size).
    external: list = field(default_factory=list)

    # Where things go.
    work_dir: str = "runs"
    report_dir: str = "reports"
    # Seconds a notebook's cell may run before the engine stops the notebook.
    notebook_timeout: int = 3600

    @property
    def draw_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def data_dir(self) -> Path:
        """The data sets written or fetched for any profile of this work_dir."""
        return Path(self.work_dir) / "data"

    @property
    def run_dir(self) -> Path:
        return Path(self.work_dir) / self.profile

    @property
    def reports(self) -> Path:
        return Path(self.report_dir) / self.profile

    @property
    def model_spec(self) -> ModelSpec:
        return self._spec(ModelSpec)

    @property
    def data_spec(self) -> DataSpec:
        return self._spec(DataSpec)

    @property
    def training_spec(self) -> TrainingSpec:
        return self._spec(TrainingSpec)

    def _spec(self, spec: type):
        """What one step of the science library reads of the profile: the keys its spec names, and
        no others, so a function given it cannot come to depend on the rest."""
        return spec(**{f.name: getattr(self, f.name) for f in dataclasses.fields(spec)})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __post_init__(self):
        """The checks across keys and inside lists and mappings."""
        for key, allowed in (("analyses", ANALYSES), ("template_splits", SPLITS)):
            if unknown := sorted(set(getattr(self, key)) - set(allowed)):
                raise ConfigError(f"key '{key}' has unknown entries {unknown}; choose from {list(allowed)}")
        if self.caption_template.count("{}") != 1:
            raise ConfigError(
                f"key 'caption_template' must contain '{{}}' exactly once (where the caption goes), "
                f"got {self.caption_template!r}"
            )
        for i, entry in enumerate(self.external):
            if (
                not isinstance(entry, dict)
                or not {"name", "source"} <= set(entry)
                or set(entry) - {"name", "source", "captions"}
            ):
                raise ConfigError(
                    f"key 'external' entry {i} must be a mapping with name and source (and optionally "
                    f"captions), got {entry!r}"
                )
            if not all(isinstance(entry[k], str) and entry[k] for k in ("name", "source")):
                raise ConfigError(f"key 'external' entry {i}: name and source must be non-empty text, got {entry!r}")
        if repeated := sorted({seed for seed in self.seeds if self.seeds.count(seed) > 1}):
            raise ConfigError(
                f"key 'seeds' lists {repeated} more than once ({self.seeds}): each seed's models are paired "
                "by seed, and a seed twice is the same training twice; list each seed once"
            )
        if unknown := sorted(set(self.held_out_classes) - set(range(1, 6))):
            raise ConfigError(
                f"key 'held_out_classes' has {unknown}: only generators can be held out, Label_B 1-5 "
                "(1 SD 2.1, 2 SDXL, 3 SD 3, 4 DALL-E 3, 5 Midjourney 6)"
            )
        if self.fusion == "attention" and self.modality != "both":
            raise ConfigError(f"fusion: attention needs both towers (modality: both), got modality: {self.modality}")
        for split, count in self.synthetic_captions.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ConfigError(
                    f"key 'synthetic_captions': split '{split}' must have a whole number of captions, at "
                    f"least 1 (each gives six images), got {count!r}"
                )


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


if sorted([*TOP_LEVEL, *SECTION_OF]) != sorted(field_names()):
    raise ConfigError(
        f"helpers/profiles.py must place every Config key in one section: {sorted(set(field_names()) ^ set([*TOP_LEVEL, *SECTION_OF]))}"
    )


def from_dict(values: dict) -> Config:
    """The config, or a ConfigError naming each key that is unknown, missing or wrong."""
    known = set(field_names())
    if unknown := sorted(set(values) - known):
        hints = [
            f"'{k}' (did you mean '{close[0]}'?)" if (close := difflib.get_close_matches(k, known, 1)) else f"'{k}'"
            for k in unknown
        ]
        raise ConfigError(f"unknown key(s) {', '.join(hints)}; valid keys are: {sorted(known)}")
    if "profile" not in values:
        raise ConfigError("the key 'profile' is required (the name of the run)")
    try:
        return Config(**values)
    except pydantic.ValidationError as error:
        # A check of __post_init__ arrives wrapped as a value_error; its own message says it all.
        raise ConfigError(
            "; ".join(
                str(e["ctx"]["error"])
                if e["type"] == "value_error"
                else f"key '{'.'.join(map(str, e['loc']))}': {e['msg']}, got {e['input']!r}"
                for e in error.errors()
            )
        ) from None


def load_config(source: str | Path | dict, overrides: dict | None = None) -> Config:
    """A config from a profile YAML (in sections, on top of its base) or an already-parsed flat
    mapping, with overrides applied on top; the result is validated as a whole, so an override is
    held to the same rules as the file."""
    if isinstance(source, dict):
        return from_dict({**source, **(overrides or {})})
    path = Path(source)
    values = read_profile(path)
    try:
        return from_dict({**values, **(overrides or {})})
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
