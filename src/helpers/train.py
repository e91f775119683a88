"""Train without notebooks, on one GPU or many: the 02 (and with --pseudo, 03) stages headless.

    python -m helpers.train params/gpu.yaml --pseudo
    torchrun --nproc_per_node 8 -m helpers.train params/paper.yaml --pseudo
    accelerate launch -m helpers.train params/paper.yaml

Under torchrun/accelerate the Trainer runs DDP: batch_size is per device, so the global batch
is batch_size x processes (divide batch_size by the GPU count to keep the paper's 256). The
first process builds the decode cache while the others wait; only it saves models and records.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from transformers import set_seed

from . import study
from .config import load_config
from .data import study_splits
from .model import preprocessing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--pseudo", action="store_true", help="also run the pseudo-label round and retrain")
    args = parser.parse_args(argv)
    cfg = load_config(args.profile)
    set_seed(cfg.seed)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    timings = {}
    started = time.perf_counter()
    splits = study_splits(cfg)
    tokenizer, image_size = preprocessing(cfg)
    names = ["train", "validation"] + (["unlabelled"] if args.pseudo and "unlabelled" in splits else [])
    caches = study.caches_for(cfg, splits, tokenizer, image_size, names)
    timings["data_and_cache_s"] = round(time.perf_counter() - started, 1)
    mark = time.perf_counter()
    model, _, _, _ = study.train_stage(cfg, "before", caches["train"], caches["validation"])
    timings["train_before_s"] = round(time.perf_counter() - mark, 1)
    if "unlabelled" in caches:
        mark = time.perf_counter()
        train_plus, val_plus, stats, _ = study.pseudo_round(cfg, splits, caches, model)
        study.train_stage(cfg, "after", train_plus, val_plus, {"pseudo": stats})
        timings["pseudo_and_train_after_s"] = round(time.perf_counter() - mark, 1)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
