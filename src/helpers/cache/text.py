"""Captions as token ids (the one tokenisation every cache and every prediction uses), and as the
text tower's output (the one encoding that frozen-text features and the streaming scorer reuse)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from tqdm.auto import tqdm


def tokenizer_key(tokenizer) -> str:
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    lower = getattr(tokenizer, "do_lower_case", None)
    return hashlib.sha256(f"{type(tokenizer).__name__}|{lower}|{vocab}".encode()).hexdigest()[:16]


def tokenize(tokenizer, captions: list, max_length: int, caption_template: str = "{}") -> tuple[np.ndarray, np.ndarray]:
    """(input_ids [N, max_length] int32, lengths [N]) of template(caption); a missing caption is empty text."""
    texts = [caption_template.replace("{}", caption or "") for caption in captions]
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding="max_length", return_tensors="np")
    return encoded["input_ids"].astype(np.int32), encoded["attention_mask"].sum(1).astype(np.int32)


@torch.inference_mode()
def encode_captions(model, ids: np.ndarray, lengths: np.ndarray, batch_size: int = 256,
                    desc: str | None = None) -> np.ndarray:
    """The text tower's pooled output [N, D] for each row of token ids, in eval mode (a fixed
    function of the caption, so callers compute it once per distinct caption), batch by batch
    trimmed to the longest caption in the batch."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts = []
    for start in tqdm(range(0, len(ids), batch_size), desc=desc, unit="batch", disable=desc is None):
        batch_lengths = torch.from_numpy(np.asarray(lengths[start:start + batch_size])).long()
        width = max(int(batch_lengths.max()), 1)
        batch_ids = torch.from_numpy(np.ascontiguousarray(ids[start:start + batch_size, :width])).long()
        mask = (torch.arange(width).unsqueeze(0) < batch_lengths.unsqueeze(1)).long()
        parts.append(model.encode_text(batch_ids.to(device), mask.to(device)).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(parts)
