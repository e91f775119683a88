"""The pseudo-label round of the study: the pool as pseudo-labelling sees it (overlap with the
other splits), predicting it, the saved selection and what made it, and the augmented data of the
'after' stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from helpers.config import PSEUDO_RULES, Config
from helpers.data.splits import is_labelled, normalised_captions
from helpers.inference import cached as inference
from helpers.inference.cached import pick_device
from helpers.inference.caption_groups import group_decode
from helpers.modeling.checkpoints import load_detector, weights_fingerprint
from helpers.profiles import section_values
from helpers.training import distributed
from helpers.training import pseudo_labels as pseudo
from study.setup import model_dir
from study.stages import training_data


def pseudo_cache_names(splits) -> list[str]:
    """The caches a pseudo-label round needs: train, validation, the pool (when the profile has
    one), and a labelled test split (to keep its images out of the pool)."""
    return (
        ["train", "validation"]
        + (["unlabelled"] if "unlabelled" in splits else [])
        + (["test"] if "test" in splits and is_labelled(splits["test"]) else [])
    )


SCORED = ("validation", "test")


def pseudo_pool(splits, caches: dict, policy: str):
    """(the pool as pseudo-labelling sees it, overlap counts). A pool row whose image (digest of
    the file) is in train is always left out. A pool row whose normalised caption or image is in
    a scored split (validation, test) is left out under pool_overlap: drop, and kept under keep
    (the authors' transductive setup). The same image in two releases has other bytes, and every
    caption comes with six images, so the caption is the key that finds a shared test set. policy:
    the profile's pool_overlap."""
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
        elif policy == "drop":
            keep &= ~(same_image | same_caption)
    dropped = int((~keep).sum())
    if any(v["captions"] or v["images"] for v in overlap.values()):
        shared = ", ".join(
            f"{n} ({v['captions']} by caption, {v['images']} by image)"
            for n, v in overlap.items()
            if v["captions"] or v["images"]
        )
        print(
            f"{'WARNING: ' if policy == 'keep' else ''}unlabelled pool rows shared with {shared}; "
            f"pool_overlap: {policy}: {dropped} of {len(pool)} left out"
            + (" (kept: the transductive setup pseudo-labels the images it is scored on)" if policy == "keep" else "")
        )
    if dropped:
        pool = pool.subset(np.flatnonzero(keep))
    return pool, {"policy": policy, "shared": overlap, "left_out": dropped}


def pool_captions(splits, pool) -> np.ndarray:
    return np.asarray(splits["unlabelled"]["Caption"], dtype=object)[pool.rows]


def selections_by_rule(cfg: Config, predictions, captions) -> dict:
    """The selection from the same predictions under the paper's rule and each bias-aware one
    (training.pseudo_labels), the profile's other pseudo-label settings kept; notebook 13 retrains
    with them."""
    return {
        rule: profile_select(cfg, predictions, captions, balance, group_check)
        for rule, (balance, group_check) in PSEUDO_RULES.items()
    }


def profile_select(cfg: Config, predictions, captions, balance: str, group_check: bool):
    """training.pseudo_labels.select with the profile's threshold, split and confidence, and the
    given balance and group check."""
    return pseudo.select(
        predictions,
        captions,
        cfg.pseudo_threshold,
        cfg.pseudo_train_fraction,
        cfg.seed,
        cfg.pseudo_confidence,
        cfg.pseudo_split,
        balance,
        group_check,
    )


def kept_by_rule(selections: dict) -> pd.DataFrame:
    """Rows kept per predicted class, one column per rule."""
    return pd.DataFrame(
        {
            rule: pd.DataFrame(chosen.stats["per_class"]).set_index("class")["kept"]
            for rule, chosen in selections.items()
        }
    )


def new_selection(cfg: Config, splits, pool, overlap: dict, model, made_by: dict | None = None, saved_to=None):
    """(the selection from `model`'s predictions on the pool, the pool's overlap in its statistics,
    the predictions); the main process saves it to `saved_to` (default: the study's,
    pseudo_file) with what made it (selection_identity: pool, weights, settings), from which the
    'after' stage is rebuilt by another process or a resumed run without predicting again."""
    selection, predictions = select_pool(cfg, splits, pool, model)
    selection.stats["overlap"] = overlap
    if distributed.is_main():
        made_by = made_by or selection_identity(cfg, pool, model_dir(cfg, "before"))
        pseudo.save_selection(saved_to or pseudo_file(cfg), selection, made_by)
    return selection, predictions


def select_pool(cfg: Config, splits, pool, model):
    """(the selection the profile's rule makes from `model`'s predictions on the pool, the
    predictions), nothing saved: the pseudo-label round of one model."""
    predictions = inference.predict(model, pool, cfg.eval_batch_size, desc="predict unlabelled")
    captions = pool_captions(splits, pool)
    if cfg.task_b_decoding == "caption_groups":
        predictions, groups = group_decode(predictions.prob_ai, predictions.probs_b, captions)
        print(f"pool decoded by caption group: {groups.summary()}")
    return profile_select(cfg, predictions, captions, cfg.pseudo_balance, cfg.pseudo_group_check), predictions


def pseudo_file(cfg: Config) -> Path:
    return cfg.run_dir / "pseudo_labels.npz"


# The sections that turn the 'before' model's predictions into pseudo-labels (with the seed).
SELECTION_SETTINGS = ("training", "pseudo_labels")


def selection_identity(cfg: Config, pool, before: Path) -> dict:
    """What a saved selection must match to be reused: the pool, the weights that predicted it
    (the model saved in `before`), and the settings that turn predictions into pseudo-labels."""
    return {
        "pool": pool.fingerprint(),
        "model": weights_fingerprint(before),
        "settings": section_values(cfg, SELECTION_SETTINGS),
    }


def pseudo_data(cfg: Config, splits, caches: dict, before: Path | None = None, saved_to: Path | None = None):
    """(train+, validation+, stats) for the 'after' stage: from the selection saved at `saved_to`
    (default: the study's, pseudo_file) when it was made by this pool, model and settings, else by
    a new pseudo-label round with the model saved in `before` (default: the study's 'before'). The
    main process decides (the others wait, at most ddp_timeout) and hands its selection to every
    process, so all train on the same rows whatever disk each one has."""
    before, saved_to = before or model_dir(cfg, "before"), saved_to or pseudo_file(cfg)
    pool, overlap = pseudo_pool(splits, caches, cfg.pool_overlap)
    selection = None
    with distributed.main_first("the main process's pseudo-label round"):
        if distributed.is_main():
            # Digesting the 'before' weights reads the whole file: once per call.
            made_by = selection_identity(cfg, pool, before)
            selection, why = pseudo.load_selection(saved_to, made_by)
            if selection is None:
                print(f"pseudo-labels: {why}; predicting the pool again with {before}")
                base, _ = load_detector(before, pick_device())
                selection, _ = new_selection(cfg, splits, pool, overlap, base, made_by, saved_to)
    selection = distributed.broadcast(selection, "the pseudo-label selection")
    return pseudo.augment(*training_data(caches, cfg.held_out_classes), pool, selection)
