"""Batched prediction from a cache, and the hierarchical decoding of the two heads."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from helpers.cache.dataset import CachedSplit, collate, with_text_features
from helpers.labels import REAL


@dataclass
class Predictions:
    prob_ai: np.ndarray  # [N] P(AI) from head A
    probs_b: np.ndarray  # [N, 6] softmax of head B
    label_a: np.ndarray  # [N] 1 when prob_ai >= threshold
    label_b: np.ndarray  # [N] real when A says real, else the most likely AI class
    confidence_a: np.ndarray  # [N] probability of the chosen Task A answer
    confidence_b: np.ndarray  # [N] probability of the chosen Task B answer (see decode)


def ai_class_probabilities(probs_b: np.ndarray) -> np.ndarray:
    """[N, 5] head B renormalised over the five AI classes (its 'real' logit is never trained under
    the paper's loss)."""
    return probs_b[:, 1:] / probs_b[:, 1:].sum(1, keepdims=True).clip(min=1e-12)


def decode(prob_ai: np.ndarray, probs_b: np.ndarray, threshold: float = 0.5, mode: str = "hierarchical") -> Predictions:
    """mode "hierarchical": Task B is 'real' whenever Task A says real, so its confidence is then
    Task A's; otherwise it is the best AI class, with its probability renormalised over the five
    AI classes (head B's 'real' logit is never trained under the paper's loss).
    mode "six_class" (the authors' code): A is P(AI) > threshold; B is the argmax over all six
    classes with its softmax probability as confidence, set to real where A says real.
    mode "caption_groups" is hierarchical here, image by image: its groups are decoded where the
    captions are at hand (inference.caption_groups)."""
    prob_ai, probs_b = np.asarray(prob_ai, np.float64), np.asarray(probs_b, np.float64)
    if mode == "caption_groups":
        mode = "hierarchical"
    if mode == "six_class":
        label_a = (prob_ai > threshold).astype(np.int64)
        label_b = np.where(label_a == 1, probs_b.argmax(1), REAL) if len(probs_b) else np.zeros(0, np.int64)
        confidence_a = np.where(label_a == 1, prob_ai, 1.0 - prob_ai)
        return Predictions(prob_ai, probs_b, label_a, label_b, confidence_a, probs_b.max(1, initial=0.0))
    if mode != "hierarchical":
        raise ValueError(f"decoding mode must be 'hierarchical', 'six_class' or 'caption_groups', got {mode!r}")
    label_a = (prob_ai >= threshold).astype(np.int64)
    ai_probs = ai_class_probabilities(probs_b)
    best_ai = ai_probs.argmax(1) + 1
    label_b = np.where(label_a == 1, best_ai, REAL)
    confidence_a = np.where(label_a == 1, prob_ai, 1.0 - prob_ai)
    confidence_b = np.where(label_a == 1, ai_probs.max(1), confidence_a)
    return Predictions(prob_ai, probs_b, label_a, label_b, confidence_a, confidence_b)


def autocast_for(device: torch.device, bf16: bool):
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "blank_image", "text_features")


def host_batches(cached: CachedSplit, batch_size: int, pin: bool):
    """The model's inputs batch by batch (collated, pinned when `pin`), the next one read from the
    cache in a thread while the caller works on this one."""

    def read(start):
        batch = collate(cached.__getitems__(np.arange(start, min(start + batch_size, len(cached)))))
        return {k: batch[k].pin_memory() if pin else batch[k] for k in MODEL_INPUTS if k in batch}

    starts = list(range(0, len(cached), batch_size))
    if not starts:
        return
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = [reader.submit(read, start) for start in starts[:1]]
        for start in starts[1:] + [None]:
            batch = pending.pop().result()
            if start is not None:
                pending.append(reader.submit(read, start))
            yield batch


def device_batches(cached: CachedSplit, batch_size: int, device: torch.device):
    """host_batches on `device`. On CUDA the next batch is copied on a stream of its own while the
    model runs on this one, so the copy does not wait for the compute or hold it up."""
    batches = host_batches(cached, batch_size, pin=device.type == "cuda")
    if device.type != "cuda":
        yield from ({k: v.to(device) for k, v in batch.items()} for batch in batches)
        return
    side, compute = torch.cuda.Stream(device), torch.cuda.current_stream(device)

    def send(batch):
        with torch.cuda.stream(side):
            return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    ahead = None
    for batch in batches:
        sent = send(batch)
        if ahead is not None:
            yield ahead
        compute.wait_stream(side)
        for tensor in sent.values():
            tensor.record_stream(compute)  # freed only once the compute stream is done with it
        ahead = sent
    if ahead is not None:
        yield ahead


@torch.inference_mode()
def predict(
    model,
    cached: CachedSplit,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    threshold: float = 0.5,
    bf16: bool | None = None,
    desc: str | None = "predict",
) -> Predictions:
    """desc: the progress bar's label; None for no bar (when the caller shows its own). The text
    tower runs once per distinct caption (cache.text.text_features), not once per row. bf16: the
    model's own precision (its config's bf16) unless given."""
    bf16 = getattr(model.config, "bf16", False) if bf16 is None else bf16
    device = torch.device(device) if device is not None else next(model.parameters()).device
    mode = getattr(model.config, "task_b_decoding", "hierarchical")
    if not len(cached):
        # A pool emptied by overlap dropping, or a split whose every image was unreadable.
        print(f"{desc or 'predict'}: no rows to score (the split is empty); nothing scored")
        return decode(np.zeros(0), np.zeros((0, len(model.config.class_names))), threshold, mode)
    model.eval().to(device)
    if cached.text_features is None and model.config.modality != "image":
        # As training evaluated: a frozen tower's features were computed once, outside autocast
        # (training.trainer.make_trainer); a trained tower ran inside the model, under autocast.
        precision = contextlib.nullcontext() if model.config.freeze_text else autocast_for(device, bf16)
        with precision:  # no bar of its own where the caller shows one (the streaming scorer)
            cached = with_text_features(cached, model, batch_size, desc=desc and f"{desc}: text features")
    logits_a, logits_b = [], []
    batches = device_batches(cached, batch_size, device)
    for inputs in tqdm(batches, total=-(-len(cached) // batch_size), desc=desc, unit="batch", disable=desc is None):
        with autocast_for(device, bf16):
            out = model(**inputs)
        logits_a.append(out.logits_a.float())
        logits_b.append(out.logits_b.float())
    prob_ai = torch.sigmoid(torch.cat(logits_a)).cpu().numpy()
    probs_b = torch.softmax(torch.cat(logits_b), dim=-1).cpu().numpy()
    return decode(prob_ai, probs_b, threshold, mode)
