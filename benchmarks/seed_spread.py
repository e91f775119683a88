"""The seed spread of a profile's 'before' model: test F1-A and weighted F1-B per seed, their mean
and standard deviation, and the seconds a training takes. How the demo's variants in
docs/measurements.md were compared (epochs, learning rate, vision tower, ...).

    python benchmarks/seed_spread.py params/demo.yaml --seeds 0 1 2 3 4
    python benchmarks/seed_spread.py params/demo.yaml --seeds 0 1 2 3 4 --set epochs=8
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from helpers.analyses.common import evaluate  # noqa: E402
from helpers.config import load_config  # noqa: E402
from helpers.evaluation.metrics import compute_metrics_for  # noqa: E402
from helpers.modeling.building import build_model, preprocessing  # noqa: E402
from helpers.overrides import parse_overrides  # noqa: E402
from helpers.training import trainer as training  # noqa: E402
from study.identity import training_identity  # noqa: E402
from study.setup import study_splits  # noqa: E402
from study.stages import caches_for, evaluation_split  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a profile key (repeatable)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "seed-spread"))
    args = parser.parse_args(argv)
    base = load_config(args.profile, {**parse_overrides(args.set), "work_dir": args.work, "report_dir": args.work})
    splits = study_splits(base)
    tokenizer, size = preprocessing(base.model_spec)
    scored = evaluation_split(splits)
    caches = caches_for(base, splits, tokenizer, size, ["train", "validation", scored])
    found, seconds = [], []
    for seed in args.seeds:
        cfg = dataclasses.replace(base, seed=seed)
        started = time.perf_counter()
        model, _ = build_model(cfg.model_spec)
        with tempfile.TemporaryDirectory() as out:
            model, _ = training.train(
                cfg.training_spec,
                model,
                caches["train"],
                caches["validation"],
                out,
                compute_metrics_for(cfg.task_b_decoding),
                training_identity(cfg, "before"),
            )
        seconds.append(time.perf_counter() - started)
        scores, _ = evaluate(model, caches[scored], cfg.eval_batch_size, None)
        found.append((100 * scores["f1_a"], 100 * scores["f1_b_weighted"]))
        print(
            f"seed {seed}: {scored} F1-A {found[-1][0]:.1f}, weighted F1-B {found[-1][1]:.1f} ({seconds[-1]:.1f} s)",
            flush=True,
        )
    values = np.array(found)
    spread = values.std(0, ddof=1) if len(values) > 1 else np.full(2, np.nan)
    print(
        f"{base.profile} {args.set or ''}: F1-A {values[:, 0].mean():.2f} ± {spread[0]:.2f}, weighted F1-B "
        f"{values[:, 1].mean():.2f} ± {spread[1]:.2f} over {len(values)} seeds; {np.mean(seconds):.1f} s a training"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
