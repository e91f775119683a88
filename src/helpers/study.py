"""The steps the notebooks share: set-up, caches, models and metric records on disk."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import cache as cache_mod
from . import distributed, launch, precision
from .config import Config, changed_keys, load_config
from .data import study_splits  # noqa: F401 (the notebooks call study.study_splits)
from .inference import pick_device
from .provenance import provenance
from .records import json_default, record, recorded, write_json  # noqa: F401 (notebooks call study.recorded)


def project_root(start: Path | None = None) -> Path:
    """The folder holding pyproject.toml, so notebooks run the same from notebooks/ or the root."""
    here = (start or Path.cwd()).resolve()
    # Then the checkout this package was installed from (editable install), wherever the kernel starts.
    for folder in (here, *here.parents, Path(__file__).resolve().parents[2]):
        if (folder / "pyproject.toml").is_file() and (folder / "src" / "helpers").is_dir():
            return folder
    raise FileNotFoundError(f"no project root (pyproject.toml with src/helpers) above {here}")


def profile_path(profile: str | Path, root: Path) -> Path:
    """A profile name (demo) means params/<name>.yaml of the project; anything else is a path."""
    path = Path(profile)
    return path if path.suffix in (".yaml", ".yml") else root / "params" / f"{profile}.yaml"


def setup(namespace: dict) -> Config:
    """The notebook's config from its parameters (profile, overrides): the profile's YAML with
    the overrides on top, validated whole; work from the project root; seeds set."""
    from transformers import set_seed

    root = project_root()
    os.chdir(root)
    path = profile_path(namespace["profile"], root)
    cfg = load_config(path, namespace.get("overrides") or {})
    # The resolved values, in the executed notebook (stderr: left out of the HTML reading copy).
    print(f"{path.name} with overrides {namespace.get('overrides') or {}}: {json.dumps(cfg.to_dict())}", file=sys.stderr)
    distributed.configure(cfg)
    precision.apply_tf32(cfg)
    set_seed(cfg.seed)
    for folder in (cfg.run_dir, cfg.reports, figures_dir(cfg)):
        folder.mkdir(parents=True, exist_ok=True)
    return cfg


def figures_dir(cfg: Config) -> Path:
    return cfg.reports / "figures"


def model_dir(cfg: Config, stage: str) -> Path:
    return cfg.run_dir / f"model_{stage}"


def caption_template(cfg: Config, split_name: str) -> str:
    return cfg.caption_template if split_name in cfg.template_splits else "{}"


def caches_for(cfg: Config, splits, tokenizer, image_size: int, names=None) -> dict[str, cache_mod.CachedSplit]:
    """The decode cache of each named split. Under bad_images: zero, rows whose image cannot be
    read come after the cached ones, with the all-zero input (they keep their failures entry)."""
    names = names or list(splits)
    root = cfg.run_dir.parent / "cache"
    # Every process asks for each cache: the first builds it under its file lock, the others sleep
    # in the lock and then open it (no collective, so no process-group timeout applies).
    caches = {name: cache_mod.build_cache(splits[name], name, root, image_size, tokenizer, cfg.max_caption_length,
                                          cfg.bad_images, caption_template=caption_template(cfg, name))
              for name in names}
    if cfg.bad_images == "zero":
        for name, cached in caches.items():
            if cached.n_failed:
                print(f"{name}: {cached.n_failed} unreadable image(s) get the all-zero input (bad_images: zero)")
        caches = {name: with_zero_inputs(cfg, splits[name], name, cached, tokenizer, image_size)
                  for name, cached in caches.items()}
    return caches


def with_zero_inputs(cfg: Config, split, name: str, cached, tokenizer, image_size: int):
    """The cache plus those of its unreadable rows it does not hold yet, each on the all-zero input
    (blank_rows): one entry per row of the split."""
    missing = np.setdiff1d(cached.failures["row"].to_numpy(), cached.rows) if cached.n_failed else []
    if not len(missing):
        return cached
    blanks = cache_mod.blank_rows(split, missing, image_size, tokenizer, cfg.max_caption_length,
                                  caption_template(cfg, name))
    # An unreadable row has no digest (b""), which the pool-overlap check never matches.
    digests = None if cached.digests is None else np.concatenate([cached.digests, np.full(len(blanks), b"", "S16")])
    return dataclasses.replace(cache_mod.CachedSplit.concat([cached, blanks]), failures=cached.failures, digests=digests)


def pseudo_cache_names(splits) -> list[str]:
    """The caches a pseudo-label round needs: train, validation, the pool, and a labelled test
    split (to keep its images out of the pool)."""
    from .data import is_labelled

    return ["train", "validation", "unlabelled"] + (["test"] if "test" in splits and is_labelled(splits["test"]) else [])


SCORED = ("validation", "test")


def pseudo_pool(cfg: Config, splits, caches: dict):
    """(the pool as pseudo-labelling sees it, overlap counts). A pool row whose image (digest of
    the file) is in train is always left out. A pool row whose normalised caption or image is in
    a scored split (validation, test) is left out under pool_overlap: drop, and kept under keep
    (the authors' transductive setup). The same image in two releases has other bytes, and every
    caption comes with six images, so the caption is the key that finds a shared test set."""
    from .data import normalised_captions

    pool = caches["unlabelled"]
    captions = normalised_captions(np.asarray(splits["unlabelled"]["Caption"], dtype=object)[pool.rows])
    keep, overlap = np.ones(len(pool), bool), {}
    for name in ("train", *SCORED):
        if name not in splits or name == "unlabelled":
            continue
        other = caches.get(name)
        same_image = np.zeros(len(pool), bool)
        if other is not None and other.digests is not None and pool.digests is not None:
            same_image = np.isin(pool.digests, other.digests[other.digests != b""]) & (pool.digests != b"")
        same_caption = np.isin(captions, list(set(normalised_captions(splits[name]["Caption"]))))
        overlap[name] = {"captions": int(same_caption.sum()), "images": int(same_image.sum())}
        if name == "train":
            keep &= ~same_image
        elif cfg.pool_overlap == "drop":
            keep &= ~(same_image | same_caption)
    dropped = int((~keep).sum())
    if any(v["captions"] or v["images"] for v in overlap.values()):
        shared = ", ".join(f"{n} ({v['captions']} by caption, {v['images']} by image)" for n, v in overlap.items()
                           if v["captions"] or v["images"])
        print(f"{'WARNING: ' if cfg.pool_overlap == 'keep' else ''}unlabelled pool rows shared with {shared}; "
              f"pool_overlap: {cfg.pool_overlap}: {dropped} of {len(pool)} left out"
              + (" (kept: the transductive setup pseudo-labels the images it is scored on)" if cfg.pool_overlap == "keep"
                 else ""))
    if dropped:
        pool = pool.subset(np.flatnonzero(keep))
    return pool, {"policy": cfg.pool_overlap, "shared": overlap, "left_out": dropped}


def train_stage(cfg: Config, stage: str, train_data, val_data, extra: dict | None = None):
    """Train a fresh model for one stage ('before' or 'after' pseudo-labels), save it, record it.
    Returns the model, its tokenizer, the training loss per logging step and the per-epoch
    validation metrics. With resume: auto, a stage already finished by the same run is loaded,
    not trained again, and a stage cut short continues from its last complete checkpoint. With
    processes > 1 (and not already under torchrun), training runs in a torchrun subprocess."""
    from . import training

    current = training.run_identity(cfg, train_data, val_data, cfg.processes, stage)
    saved = model_dir(cfg, stage) / "training_meta.json"
    if cfg.resume == "auto" and saved.is_file():
        print(f"stage '{stage}' already finished for this run: loading {model_dir(cfg, stage)} (resume: auto)")
        return _saved_stage(cfg, stage, current)
    if cfg.processes > 1 and not distributed.launched():
        distributed.batch_plan(cfg.batch_size, cfg.processes, cfg.per_device_max_batch)  # refuse here, not in N processes
        launch.train_stage(cfg, stage)
        if not saved.is_file():
            raise FileNotFoundError(f"the training subprocess ended without saving {model_dir(cfg, stage)}")
        return _saved_stage(cfg, stage, current)
    return _train_here(cfg, stage, train_data, val_data, extra)


def _saved_stage(cfg: Config, stage: str, current: dict):
    """A stage's saved model, checked to belong to this run (whatever its process count), as
    train_stage returns it."""
    from . import training
    from .model import load_detector

    meta = json.loads((model_dir(cfg, stage) / "training_meta.json").read_text())
    recorded = dict(meta.get("run_identity") or {}, processes=current["processes"])
    training.check_same_run(recorded, current, str(model_dir(cfg, stage)))
    model, tokenizer = load_detector(model_dir(cfg, stage), pick_device())
    train_loss, eval_metrics = training.learning_curves(pd.DataFrame(meta["history"]))
    record(cfg, f"train_{stage}", {k: meta[k] for k in SUMMARY_KEYS if k in meta})
    return model, tokenizer, train_loss, eval_metrics


SUMMARY_KEYS = ("best_epoch", "best_metric", "seconds", "train_rows", "validation_rows", "curves", "epochs_run",
                "resumed_from", "processes", "per_device_batch", "gradient_accumulation")


def _train_here(cfg: Config, stage: str, train_data, val_data, extra: dict | None):
    from . import training
    from .model import build_model, save_detector

    started = time.perf_counter()
    run_provenance = {**provenance(cfg), **(extra or {})}
    model, tokenizer = build_model(cfg)
    model, history = training.train(cfg, model, train_data, val_data, cfg.run_dir / f"checkpoints_{stage}",
                                    run_provenance, resume=cfg.resume == "auto", stage=stage)
    train_loss, eval_metrics = training.learning_curves(history)
    best = eval_metrics.loc[eval_metrics[f"eval_{cfg.metric_for_best}"].idxmax()]
    processes = distributed.world_size()
    per_device, accumulation = distributed.batch_plan(cfg.batch_size, processes, cfg.per_device_max_batch)
    summary = {"best_epoch": float(best["epoch"]), "best_metric": float(best[f"eval_{cfg.metric_for_best}"]),
               "seconds": round(time.perf_counter() - started, 1), "train_rows": len(train_data),
               "validation_rows": len(val_data), "curves": eval_metrics.to_dict(orient="records"),
               "epochs_run": history.attrs["epochs_run"], "resumed_from": history.attrs["resumed_from"],
               "processes": processes, "per_device_batch": per_device, "gradient_accumulation": accumulation}
    if distributed.is_main():
        save_detector(model, tokenizer, model_dir(cfg, stage),
                      {**run_provenance, **summary, "run_identity": history.attrs["run_identity"],
                       "history": history.to_dict(orient="records")})
        record(cfg, f"train_{stage}", summary)
    distributed.barrier()
    return model, tokenizer, train_loss, eval_metrics


def pseudo_round(cfg: Config, splits, caches: dict, model):
    """Predict the unlabelled pool with `model` (the saved 'before' model); return (train+,
    validation+, stats, predictions). The selection is saved to runs/<profile>/pseudo_labels.npz
    with what made it (pool, model weights, settings), from which the 'after' stage is rebuilt by
    another process or a resumed run without predicting again."""
    from . import inference, pseudo

    pool, overlap = pseudo_pool(cfg, splits, caches)
    predictions = inference.predict(model, pool, cfg.eval_batch_size, bf16=cfg.bf16, desc="predict unlabelled")
    captions = np.asarray(splits["unlabelled"]["Caption"], dtype=object)[pool.rows]
    selection = pseudo.select(predictions, captions, cfg.pseudo_threshold, cfg.pseudo_train_fraction, cfg.seed,
                              cfg.pseudo_confidence, cfg.pseudo_split)
    selection.stats["overlap"] = overlap
    if distributed.is_main():
        pseudo.save_selection(pseudo_file(cfg), selection, selection_identity(cfg, pool))
    train_plus, val_plus, stats = pseudo.augment(caches["train"], caches["validation"], pool, selection)
    record(cfg, "pseudo", stats)
    return train_plus, val_plus, stats, predictions


def pseudo_file(cfg: Config) -> Path:
    return cfg.run_dir / "pseudo_labels.npz"


def selection_identity(cfg: Config, pool) -> dict:
    """What a saved selection must match to be reused: the pool, the weights that predicted it,
    and the settings that turn predictions into pseudo-labels."""
    from .model import weights_fingerprint

    settings = ("pseudo_threshold", "pseudo_train_fraction", "pseudo_confidence", "pseudo_split", "pool_overlap",
                "task_b_decoding", "seed")
    return {"pool": pool.fingerprint(), "model": weights_fingerprint(model_dir(cfg, "before")),
            "settings": {k: getattr(cfg, k) for k in settings}}


def pseudo_data(cfg: Config, splits, caches: dict):
    """(train+, validation+, stats) for the 'after' stage: from the saved selection when it was
    made by this pool, model and settings, else by a new pseudo-label round with the saved 'before'
    model. The main process decides (the others wait, at most ddp_timeout) and hands its selection
    to every process, so all train on the same rows whatever disk each one has."""
    from . import pseudo
    from .model import load_detector

    pool, _ = pseudo_pool(cfg, splits, caches)
    selection = None
    with distributed.main_first("the main process's pseudo-label round"):
        if distributed.is_main():
            selection, why = pseudo.load_selection(pseudo_file(cfg), selection_identity(cfg, pool))
            if selection is None:
                print(f"pseudo-labels: {why}; predicting the pool again with {model_dir(cfg, 'before')}")
                base, _ = load_detector(model_dir(cfg, "before"), pick_device())
                pseudo_round(cfg, splits, caches, base)
                selection, _ = pseudo.load_selection(pseudo_file(cfg), selection_identity(cfg, pool))
    selection = distributed.broadcast(selection, "the pseudo-label selection")
    return pseudo.augment(caches["train"], caches["validation"], pool, selection)


class StaleModelError(RuntimeError):
    """A saved model that another run's settings made."""


def checked_model_dir(cfg: Config, stage: str) -> Path:
    """The stage's saved model folder, refused when it was trained under other settings than
    this run's (config.training_identity): nothing stale is read as current."""
    from .config import training_identity

    folder = model_dir(cfg, stage)
    meta_path = folder / "training_meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} holds no trained model; run notebook 02 (and 03) of this profile first")
    recorded_params = (json.loads(meta_path.read_text()).get("run_identity") or {}).get("params")
    changes = changed_keys(recorded_params or {}, training_identity(cfg, stage))
    if recorded_params is None or changes:
        raise StaleModelError(f"{folder} was trained by another run ({'; '.join(changes) or 'no run identity recorded'}); "
                              "train it again for these settings (notebooks 02-03, or python -m helpers.run)")
    return folder


def final_stage(cfg: Config) -> str:
    """'after' when this profile pseudo-labels, else 'before'."""
    return "after" if cfg.unlabelled_split else "before"


def final_model(cfg: Config):
    """The study's final model (after pseudo-labels when the profile has that stage), checked to be
    this run's, its tokenizer and stage name."""
    from .model import load_detector

    stage = final_stage(cfg)
    model, tokenizer = load_detector(checked_model_dir(cfg, stage), pick_device())
    return model, tokenizer, stage


def evaluation_split(splits) -> str:
    """Where the analyses score: the labelled test split, else validation."""
    from .data import is_labelled

    return "test" if "test" in splits and is_labelled(splits["test"]) else "validation"


def export_samples(split, folder: Path, per_class: int = 2) -> Path:
    """A few images of each class written out as ordinary files, to try the prediction command on."""
    import datasets
    from PIL import Image

    from .labels import CLASS_NAMES

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    split = split.cast_column("Image", datasets.Image(decode=False))
    labels = np.asarray(split["Label_B"])
    for cls, name in enumerate(CLASS_NAMES):
        for row in np.flatnonzero(labels == cls)[:per_class]:
            raw = split[int(row)]["Image"]["bytes"]
            suffix = (Image.open(io.BytesIO(raw)).format or "bin").lower()
            (folder / f"{name.replace(' ', '_').replace('.', '')}_{row}.{suffix}").write_bytes(raw)
    return folder


def read_failures(caches: dict) -> dict[str, int]:
    return {name: c.n_failed for name, c in caches.items()}
