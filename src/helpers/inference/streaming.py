"""Score a stream of inputs with a trained detector: images decoded in worker processes, chunk
by chunk and ahead of the model, so that a folder of a million files is never held as decoded
images and the model step does not wait on decoding while enough workers run.

Every input gets a result. An unreadable image gets a status and a reason and is also scored on
the all-zero model input (as the authors' code scores it), so a competition file can have an
entry for every index; its probabilities are not reported as the image's.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from helpers.cache.dataset import CachedSplit
from helpers.cache.text import tokenize
from helpers.data.images import decode_many
from helpers.data.inputs import Inputs
from helpers.inference.cached import Predictions, decode, predict

DECODE_CHUNK = 32


@dataclass
class Scored:
    """Row-aligned with the inputs."""

    ok: np.ndarray  # bool: the image was read
    reason: list[str]  # why not, when not
    digest: list[bytes]  # of the encoded file (b"" when unreadable)
    predictions: Predictions  # for every row; unreadable rows on the all-zero input

    def duplicates(self) -> list[list[int]]:
        """Groups of rows whose files have the same bytes."""
        groups = collections.defaultdict(list)
        for row, digest in enumerate(self.digest):
            if digest:
                groups[digest].append(row)
        return [rows for rows in groups.values() if len(rows) > 1]


def default_workers() -> int:
    return os.cpu_count() or 1


def _pool(workers: int):
    """Decode processes. fork starts them at once and they touch only PIL and numpy; where fork
    does not exist, the platform's default start method is used."""
    if workers <= 0:
        return None
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def _decoded_chunks(inputs: Inputs, size: int, workers: int, transform):
    """(start, decoded rows) in input order, with up to two chunks per worker decoding ahead."""
    starts = range(0, len(inputs), DECODE_CHUNK)
    pool = _pool(workers)
    if pool is None:
        for start in starts:
            yield start, decode_many(inputs.chunk(start, start + DECODE_CHUNK), size, transform)
        return
    with pool:
        pending = collections.deque()
        for start in starts:
            pending.append(
                (start, pool.submit(decode_many, inputs.chunk(start, start + DECODE_CHUNK), size, transform))
            )
            if len(pending) >= 2 * workers:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()


def score(
    model,
    tokenizer,
    inputs: Inputs,
    batch_size: int = 64,
    workers: int | None = None,
    bf16: bool | None = None,
    transform=None,
    desc: str = "score",
    threshold: float = 0.5,
) -> Scored:
    """Predictions for every input (see the module docstring). transform(image) is applied to each
    image before the model's resize: a perturbation, or a neutral re-encoding. threshold: Task A
    calls an image AI at P(AI) >= threshold (> under six_class decoding). bf16: the model's own
    precision unless given."""
    workers = default_workers() if workers is None else workers
    size = model.config.image_size
    n = len(inputs)
    ok, reason, digest = np.zeros(n, bool), [""] * n, [b""] * n
    prob_ai, probs_b = np.full(n, np.nan), np.full((n, len(model.config.class_names)), np.nan)
    batch = []

    def flush():
        rows = np.array([row for row, _ in batch])
        pixels = np.stack([array for _, array in batch])
        ids, lengths = tokenize(
            tokenizer,
            [inputs.captions[r] for r in rows],
            model.config.max_caption_length,
            model.config.inference_caption_template,
        )
        part = CachedSplit(
            pixels, ids, lengths, np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int64), rows, blank=~ok[rows]
        )
        preds = predict(model, part, batch_size, bf16=bf16, desc=None)
        prob_ai[rows], probs_b[rows] = preds.prob_ai, preds.probs_b
        batch.clear()

    blank = np.zeros((3, size, size), np.uint8)
    device = next(model.parameters()).device
    with cores_left_to_decoding(workers, device), tqdm(total=n, desc=desc, unit="img") as bar:
        for start, decoded in _decoded_chunks(inputs, size, workers, transform):
            for offset, (array, why, file_digest) in enumerate(decoded):
                row = start + offset
                ok[row], reason[row], digest[row] = array is not None, why, file_digest
                batch.append((row, blank if array is None else array))
                if len(batch) >= batch_size:
                    flush()
            bar.update(len(decoded))
    if batch:
        flush()

    mode = getattr(model.config, "task_b_decoding", "hierarchical")
    return Scored(ok, reason, digest, decode(prob_ai, probs_b, threshold, mode=mode))


@contextlib.contextmanager
def cores_left_to_decoding(workers: int, device: torch.device):
    """On a CPU the model's threads take only the cores the decode workers leave (at least one):
    measured on 2 cores, two workers then give 1.7x one worker's rate, against 1.5x when the
    model's two threads compete with them."""
    before = torch.get_num_threads()
    if workers > 0 and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)
