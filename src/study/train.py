"""Train without notebooks, on one process or many: the 02 (and with --pseudo, 03) stages headless,
or one model of the analyses (--out, with --before for one trained after pseudo-labels).

    python -m study.train params/gpu.yaml --pseudo
    torchrun --nproc_per_node 8 -m study.train params/paper.yaml --pseudo
    accelerate launch --multi_gpu --num_processes 8 -m study.train params/paper.yaml
    python -m study.train params/paper.yaml --pseudo --resume              # after a crash or a kill
    python -m study.train params/demo.yaml --set seed=7 --set data_seed=42 --out runs/demo/models/seed7

batch_size is the global batch on any number of processes (see distributed.batch_plan); processes > 1
needs a launcher (torchrun, accelerate; the study's engine starts torchrun itself). The main process
prepares the data and builds the decode cache while the others wait; only it writes models and the
pseudo-label selection.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from helpers.config import ConfigError, load_config
from helpers.modeling.building import build_model, preprocessing
from helpers.overrides import parse_overrides
from helpers.training import distributed, precision
from study import pseudo_round
from study import stages as study_stages
from study.setup import model_dir, study_splits


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--pseudo", action="store_true", help="also run the pseudo-label round and retrain")
    parser.add_argument("--stage", choices=("before", "after"), help="run one stage only ('after' needs model_before)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the last complete checkpoint (resume: auto)"
    )
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a profile key (repeatable)")
    parser.add_argument(
        "--out", type=Path, help="save the one stage's model here (an analysis's model), not in the study's folder"
    )
    parser.add_argument(
        "--before", type=Path, help="with --stage after: the model whose predictions pick the pseudo-labels"
    )
    return parser.parse_args(argv)


def run_stages(cfg, stages: list[str], out: Path | None = None, before: Path | None = None) -> dict:
    """Train the stages; with `out`, the one stage's model is saved there (its pseudo-label selection
    beside it), and an 'after' stage starts from the model in `before` (default: the study's)."""
    timings = {}
    started = time.perf_counter()
    splits = study_splits(cfg)
    tokenizer, image_size = preprocessing(cfg.model_spec)
    names = pseudo_round.pseudo_cache_names(splits) if "after" in stages else ["train", "validation"]
    caches = study_stages.caches_for(cfg, splits, tokenizer, image_size, names)
    train, val = study_stages.training_data(caches, cfg.held_out_classes)
    timings["data_and_cache_s"] = round(time.perf_counter() - started, 1)
    if "before" in stages:
        mark = time.perf_counter()
        study_stages.train_stage(cfg, "before", *build_model(cfg.model_spec), train, val, folder=out)
        timings["train_before_s"] = round(time.perf_counter() - mark, 1)
    if "after" in stages:
        mark = time.perf_counter()
        selection = out.with_name(f"{out.name}.pseudo_labels.npz") if out else None
        train_plus, val_plus, stats = pseudo_round.pseudo_data(cfg, splits, caches, before, selection)
        study_stages.train_stage(
            cfg,
            "after",
            *build_model(cfg.model_spec),
            train_plus,
            val_plus,
            {"pseudo": stats},
            reference=val,
            folder=out,
        )
        timings["pseudo_and_train_after_s"] = round(time.perf_counter() - mark, 1)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    return timings


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    stages = [args.stage] if args.stage else ["before"] + (["after"] if args.pseudo else [])
    if args.out and len(stages) != 1:
        print("error: --out saves one model: give --stage before or --stage after", file=sys.stderr)
        return 2
    try:
        overrides = parse_overrides(args.set)
        if args.resume:
            overrides["resume"] = "auto"
        cfg = load_config(args.profile, overrides)
        distributed.configure(cfg.ddp_timeout)
        distributed.batch_plan(
            cfg.batch_size,
            distributed.world_size() if distributed.launched() else cfg.processes,
            cfg.per_device_max_batch,
        )
    except (ConfigError, distributed.BatchPlanError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if "after" in stages and not cfg.unlabelled_split:
        print(
            "error: the 'after' stage needs an unlabelled pool; this profile has unlabelled_split: ''", file=sys.stderr
        )
        return 2
    before = args.before or model_dir(cfg, "before")
    if "after" in stages and "before" not in stages and not (before / "training_meta.json").is_file():
        print(f"error: the 'after' stage starts from a trained 'before' model; {before} holds none", file=sys.stderr)
        return 2
    if cfg.processes > 1 and not distributed.launched():
        print(
            f"error: processes: {cfg.processes} trains in {cfg.processes} processes, which a launcher starts: "
            f"torchrun --nproc_per_node {cfg.processes} -m study.train {' '.join(sys.argv[1:] if argv is None else argv)}",
            file=sys.stderr,
        )
        return 2
    from transformers import set_seed

    precision.apply_tf32(cfg.tf32)
    set_seed(cfg.seed)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        timings = run_stages(cfg, stages, args.out, args.before)
    except BaseException as error:  # noqa: BLE001 (reported once per process, then re-raised as an exit code)
        distributed.report_failure(error)
        return 1
    if distributed.is_main():
        print(json.dumps(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
