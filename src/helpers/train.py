"""Train without notebooks, on one process or many: the 02 (and with --pseudo, 03) stages headless.

    python -m helpers.train params/gpu.yaml --pseudo
    python -m helpers.train params/paper.yaml --pseudo --set processes=8     # starts torchrun itself
    torchrun --nproc_per_node 8 -m helpers.train params/paper.yaml --pseudo
    accelerate launch --multi_gpu --num_processes 8 -m helpers.train params/paper.yaml
    python -m helpers.train params/paper.yaml --pseudo --resume              # after a crash or a kill

batch_size is the global batch on any number of processes (see distributed.batch_plan). The
main process prepares the data and builds the decode cache while the others wait; only it
writes models, records and the pseudo-label selection.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from helpers.config import ConfigError, load_config
from helpers.modeling.building import build_model, preprocessing
from helpers.overrides import parse_overrides
from helpers.study import pseudo_round
from helpers.study import stages as study_stages
from helpers.study.setup import study_splits
from helpers.training import distributed, launch, precision


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--pseudo", action="store_true", help="also run the pseudo-label round and retrain")
    parser.add_argument("--stage", choices=("before", "after"), help="run one stage only ('after' needs model_before)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the last complete checkpoint (resume: auto)"
    )
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a profile key (repeatable)")
    return parser.parse_args(argv)


def run_stages(cfg, stages: list[str]) -> dict:
    timings = {}
    started = time.perf_counter()
    splits = study_splits(cfg)
    tokenizer, image_size = preprocessing(cfg)
    names = pseudo_round.pseudo_cache_names(splits) if "after" in stages else ["train", "validation"]
    caches = study_stages.caches_for(cfg, splits, tokenizer, image_size, names)
    timings["data_and_cache_s"] = round(time.perf_counter() - started, 1)
    if "before" in stages:
        mark = time.perf_counter()
        study_stages.train_stage(cfg, "before", *build_model(cfg), caches["train"], caches["validation"])
        timings["train_before_s"] = round(time.perf_counter() - mark, 1)
    if "after" in stages:
        mark = time.perf_counter()
        train_plus, val_plus, stats = pseudo_round.pseudo_data(cfg, splits, caches)
        study_stages.train_stage(
            cfg, "after", *build_model(cfg), train_plus, val_plus, {"pseudo": stats}, reference=caches["validation"]
        )
        timings["pseudo_and_train_after_s"] = round(time.perf_counter() - mark, 1)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    return timings


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        overrides = parse_overrides(args.set)
        if args.resume:
            overrides["resume"] = "auto"
        cfg = load_config(args.profile, overrides)
        distributed.configure(cfg)
        distributed.batch_plan(
            cfg.batch_size,
            distributed.world_size() if distributed.launched() else cfg.processes,
            cfg.per_device_max_batch,
        )
    except (ConfigError, distributed.BatchPlanError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stages = [args.stage] if args.stage else ["before"] + (["after"] if args.pseudo else [])
    if "after" in stages and not cfg.unlabelled_split:
        print(
            "error: the 'after' stage needs an unlabelled pool; this profile has unlabelled_split: ''", file=sys.stderr
        )
        return 2
    if cfg.processes > 1 and not distributed.launched():
        try:
            launch.run(cfg, ["--stage", stages[0]] if len(stages) == 1 else ["--pseudo"], "launch_train")
        except launch.LaunchError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    from transformers import set_seed

    precision.apply_tf32(cfg)
    set_seed(cfg.seed)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        timings = run_stages(cfg, stages)
    except BaseException as error:  # noqa: BLE001 (reported once per process, then re-raised as an exit code)
        distributed.report_failure(error)
        return 1
    if distributed.is_main():
        print(json.dumps(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
