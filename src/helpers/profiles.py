"""Profile files: the sections a profile holds its keys in (data, model, training, pseudo_labels,
analyses, outside_sets, run), a profile read on top of its base, and the resolved one written back.
A result's identity is the values of the sections it reads."""

from pathlib import Path

import yaml

from helpers.files import written_whole


class ConfigError(ValueError):
    """A profile that cannot be run as written."""


# Every key sits in exactly one section (config checks it). profile, base and seed stand above them:
# the seed draws the synthetic data and the split as well as the weights, so every stage reads it.
TOP_LEVEL = ("profile", "seed")
SECTIONS = {
    "data": (
        "dataset",
        "data_seed",
        "dataset_revision",
        "train_split",
        "val_split",
        "val_fraction",
        "test_split",
        "max_captions_per_split",
        "bad_images",
        "synthetic_captions",
        "synthetic_image_size",
    ),
    "model": (
        "text_encoder",
        "text_init",
        "text_config",
        "text_pooling",
        "tokenizer",
        "vision_encoder",
        "vision_init",
        "vision_config",
        "vision_input",
        "image_size",
        "fusion_dim",
        "fusion",
        "modality",
        "dropout",
        "freeze_text",
        "freeze_vision",
        "max_caption_length",
        "caption_template",
        "template_splits",
    ),
    "training": (
        "learning_rate",
        "weight_decay",
        "batch_size",
        "epochs",
        "warmup_ratio",
        "metric_for_best",
        "loss_condition",
        "held_out_classes",
        "task_b_decoding",
        "bf16",
        "tf32",
        "torch_compile",
    ),
    "pseudo_labels": (
        "unlabelled_dataset",
        "unlabelled_split",
        "unlabelled_revision",
        "pool_overlap",
        "pseudo_threshold",
        "pseudo_train_fraction",
        "pseudo_confidence",
        "pseudo_split",
        "pseudo_balance",
        "pseudo_group_check",
    ),
    "analyses": ("analyses", "analysis_epochs", "view_captions", "seeds"),
    # Apart from the analyses: the outside sets are scored by notebooks 11-13 only, so changing them
    # leaves the other analyses current.
    "outside_sets": ("external",),
    # How and where a run executes, not what it computes: a rerun with other values is the same run.
    # eval_batch_size too: how many rows are scored at once changes no result.
    "run": (
        "eval_batch_size",
        "num_workers",
        "device_cache",
        "report_to",
        "processes",
        "per_device_max_batch",
        "resume",
        "ddp_timeout",
        "keep_analysis_models",
        "work_dir",
        "report_dir",
        "notebook_timeout",
    ),
}
SECTION_OF = {key: name for name, keys in SECTIONS.items() for key in keys}


def section_values(cfg, sections) -> dict:
    """The seed and the keys of `sections`, from a Config or its to_dict() (as provenance records it):
    what an identity is the digest of."""
    values = cfg if isinstance(cfg, dict) else cfg.to_dict()
    keys = ["seed", *(k for section in sections for k in SECTIONS[section])]
    return {k: values[k] for k in keys if k in values}


def sectioned(cfg) -> dict:
    """The config as a profile file holds it: profile and seed, then each section's keys."""
    values = cfg.to_dict()
    return {**{k: values[k] for k in TOP_LEVEL}, **{s: {k: values[k] for k in keys} for s, keys in SECTIONS.items()}}


def write_resolved(cfg, path: Path) -> Path:
    """The resolved profile (file, base, overrides and notebook parameters) in sections, as a
    profile file that loads to the same config: beside a report, and for torchrun's processes."""
    with written_whole(path) as partial:
        partial.write_text(yaml.safe_dump(sectioned(cfg), sort_keys=False))
    return path


def flatten(document: dict, where: str) -> dict:
    """A profile file's sections as one mapping of keys; a key outside its section is an error
    that names the section it belongs in."""
    flat = {}
    for name, value in document.items():
        if name in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: section '{name}' must hold a mapping of keys to values, got {value!r}")
            for key, item in value.items():
                if key in SECTION_OF and SECTION_OF[key] != name:
                    raise ConfigError(f"{where}: key '{key}' belongs in section '{SECTION_OF[key]}', not '{name}'")
                flat[key] = item
        elif name in SECTION_OF:
            raise ConfigError(f"{where}: key '{name}' belongs in section '{SECTION_OF[name]}:' (indented under it)")
        else:
            flat[name] = value
    return flat


def read_profile(path: Path, seen: tuple = ()) -> dict:
    """A profile file's keys, on top of its base's (`base: paper.yaml`, next to it) when it names one."""
    if not path.is_file():
        raise ConfigError(f"profile file {path} does not exist; profiles live in params/*.yaml")
    document = yaml.safe_load(path.read_text()) or {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values")
    values = flatten(document, str(path))
    base = values.pop("base", None)
    if base is None:
        return values
    base_path = path.parent / str(base)
    if base_path.resolve() in seen:
        raise ConfigError(f"{path}: base '{base}' leads back to itself")
    inherited = read_profile(base_path, (*seen, path.resolve()))
    return {**inherited, **values}
