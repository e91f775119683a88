"""Captions as token ids: the one tokenisation every cache and every prediction uses."""
from __future__ import annotations

import hashlib
import json

import numpy as np


def tokenizer_key(tokenizer) -> str:
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    lower = getattr(tokenizer, "do_lower_case", None)
    return hashlib.sha256(f"{type(tokenizer).__name__}|{lower}|{vocab}".encode()).hexdigest()[:16]


def tokenize(tokenizer, captions: list, max_length: int, caption_template: str = "{}") -> tuple[np.ndarray, np.ndarray]:
    """(input_ids [N, max_length] int32, lengths [N]) of template(caption); a missing caption is empty text."""
    texts = [caption_template.replace("{}", caption or "") for caption in captions]
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding="max_length", return_tensors="np")
    return encoded["input_ids"].astype(np.int32), encoded["attention_mask"].sum(1).astype(np.int32)
