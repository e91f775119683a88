"""The seed spread of the findings a profile's study reports, next to its headline's
(benchmarks/seed_spread.py): per seed, the 'before' recipe's weighted F1-B on images downscaled to a
quarter of their side and blurred (sigma 2), and the share of a generator's images called AI by a
model trained without it. Needs the profile's study to have run (notebooks 02-03).

    python benchmarks/finding_spread.py params/demo.yaml --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from helpers.analyses import common, robustness  # noqa: E402
from helpers.analyses.unseen_generators import held_out_recall  # noqa: E402
from helpers.config import load_config  # noqa: E402
from helpers.evaluation.metrics import compute_metrics_for  # noqa: E402
from helpers.labels import CLASS_NAMES  # noqa: E402
from helpers.modeling.building import build_model  # noqa: E402
from helpers.training import trainer as training  # noqa: E402
from study import analysis, variants  # noqa: E402
from study.identity import training_identity  # noqa: E402
from study.stages import training_data  # noqa: E402


def trained(cfg, caches: dict):
    """A model trained in this process as the analyses' models are (variants.py), on the study's
    data less cfg's held-out generators; its checkpoints thrown away."""
    model, _ = build_model(cfg.model_spec)
    with tempfile.TemporaryDirectory() as out:
        train, val = training_data(caches, cfg.held_out_classes)
        return training.train(
            cfg.training_spec,
            model,
            train,
            val,
            out,
            compute_metrics_for(cfg.task_b_decoding),
            training_identity(cfg, "before"),
        )[0]


def findings(context: analysis.Context, seed: int, generator: int) -> dict[str, float]:
    study = context.cfg
    cfg = variants.config(study, variants.Variant(seed, variants.budget(study)))
    model = trained(cfg, context.caches)
    seeded = dataclasses.replace(context, cfg=cfg, model=model)
    unchanged = common.evaluate(model, seeded.viewed, cfg.eval_batch_size, "unperturbed")
    found = {
        f"weighted F1-B, {name} {level:g}": 100
        * robustness.at_level(
            model,
            context.splits[context.split_name],
            seeded.viewed,
            context.size,
            cfg.eval_batch_size,
            name,
            level,
            unchanged,
        )[0]["f1_b_weighted"]
        for name, level in (("downscale", 0.25), ("blur_sigma", 2.0))
    }
    without = trained(
        variants.config(study, variants.Variant(seed, variants.budget(study), held_out=(generator,))), context.caches
    )
    found[f"{CLASS_NAMES[generator]} called AI, left out"] = (
        100 * held_out_recall(seeded.evaluated, cfg.eval_batch_size, generator, without)["recall_held_out"]
    )
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--generator", type=int, default=2, help="the Label_B left out (default 2, SDXL)")
    args = parser.parse_args(argv)
    cfg = load_config(args.profile)
    context = analysis.prepare(cfg, "robustness", ("train", "validation"))
    table = pd.DataFrame({seed: findings(context, seed, args.generator) for seed in args.seeds})
    table["mean"], table["std"] = table.mean(axis=1), table[args.seeds].std(axis=1, ddof=1)
    print(table.round(1).to_string(), flush=True)
    return 0 if np.isfinite(table["mean"]).all() else 1


if __name__ == "__main__":
    sys.exit(main())
