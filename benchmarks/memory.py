"""Memory and disk of the data path at growing row counts: does anything grow with the data
that should not?

    python benchmarks/memory.py                         # 1k, 4k, 16k training rows at 224 px
    python benchmarks/memory.py --rows 600 1200 --side 64 --work /tmp/mem   # quick

Each phase runs in a fresh process, as in a real run where notebooks hand over through disk:
  data    load and normalise the splits (train, validation, unlabelled pool)
  cache   decode them into the decode cache
  pseudo  predict the pool, select pseudo-labels, build the augmented train/validation views
  epoch   one training epoch on the augmented training set (a tiny CLIP-ViT, so the data path,
          not the model, is what is measured)
For each phase it prints the peak resident set (VmHWM), the peak of its anonymous part (RssAnon,
sampled every 20 ms: the process's own memory, without file pages the OS can drop) and, for
the cache, bytes on disk per row. The synthetic images are generated once for the largest
count (not measured: a test fixture, not part of the pipeline); smaller counts take a subset.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PHASES = ("data", "cache", "pseudo", "epoch")


def profile(work: Path, rows: int, side: int, largest: int) -> dict:
    """The smoke profile at `side` px: the synthetic set sized for `largest` training rows, this
    run limited to rows/6 captions per split (every caption has six rows)."""
    from helpers.config import load_config

    captions = largest // 6
    return load_config(
        ROOT / "params" / "smoke.yaml",
        {
            "profile": f"memory-{rows}",
            "work_dir": str(work),
            "test_split": "",
            "synthetic_captions": {
                "train": captions,
                "validation": max(2, captions // 10),
                "unlabelled": max(2, captions // 4),
            },
            "synthetic_image_size": side,
            "max_captions_per_split": rows // 6,
            "vision_config": {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": side,
                "patch_size": 32,
            },
            "batch_size": 64,
            "eval_batch_size": 256,
            "epochs": 1,
            "pseudo_threshold": 0.05,
        },
    ).to_dict()


class Sampler(threading.Thread):
    """The largest RssAnon seen while the phase runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_anon, self.running = 0, True

    def run(self):
        while self.running:
            self.peak_anon = max(self.peak_anon, status()["RssAnon"])
            time.sleep(0.02)


def status() -> dict[str, int]:
    """Memory fields of /proc/self/status, in bytes."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def run_phase(phase: str, values: dict) -> dict:
    import numpy as np

    from helpers.config import load_config
    from helpers.evaluation.metrics import compute_metrics_for
    from helpers.modeling.building import build_model, preprocessing
    from study import stages
    from study.setup import study_splits

    cfg = load_config(values)
    baseline = status()
    sampler = Sampler()
    sampler.start()
    out = {}
    splits = study_splits(cfg)
    if phase != "data":
        tokenizer, size = preprocessing(cfg.model_spec)
        caches = stages.caches_for(cfg, splits, tokenizer, size, ["train", "validation", "unlabelled"])
        folders = [Path(c.pixels.sources[0].path).parent for c in caches.values()]
        out["cache_bytes"] = sum(f.stat().st_size for folder in folders for f in folder.iterdir())
        out["cached_rows"] = sum(len(c) for c in caches.values())
    if phase in ("pseudo", "epoch"):
        from helpers.inference import cached as inference
        from helpers.training import pseudo_labels as pseudo

        model, _ = build_model(cfg.model_spec)
        predictions = inference.predict(model, caches["unlabelled"], cfg.eval_batch_size, desc="predict pool")
        captions = np.asarray(splits["unlabelled"]["Caption"], dtype=object)[caches["unlabelled"].rows]
        selection = pseudo.select(predictions, captions, cfg.pseudo_threshold, cfg.pseudo_train_fraction, cfg.seed)
        train_plus, val_plus, stats = pseudo.augment(
            caches["train"], caches["validation"], caches["unlabelled"], selection
        )
        out["train_rows_after_pseudo"] = len(train_plus)
    if phase == "epoch":
        from helpers.training import trainer as training
        from study.identity import training_identity

        started = time.perf_counter()
        training.train(
            cfg.training_spec,
            model,
            train_plus,
            val_plus,
            cfg.run_dir / "checkpoints",
            compute_metrics_for(cfg.task_b_decoding),
            training_identity(cfg, "before"),
        )
        out["epoch_s"] = round(time.perf_counter() - started, 1)
    sampler.running = False
    sampler.join()
    end = status()
    out.update(baseline_rss=baseline["VmRSS"], peak_rss=end["VmHWM"], peak_anon=max(sampler.peak_anon, end["RssAnon"]))
    return out


def phase_in_new_process(phase: str, values: dict) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--values", json.dumps(values)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if done.returncode:
        raise RuntimeError(f"phase {phase} of {values['profile']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(work: Path, rows: int, side: int, largest: int) -> dict:
    values = profile(work, rows, side, largest)
    return {"rows": rows, **{phase: phase_in_new_process(phase, values) for phase in PHASES}}


def table(results: list[dict]) -> str:
    mib = 1024**2
    lines = [
        "| training rows | phase | peak RSS (MiB) | peak anonymous (MiB) | cache on disk | per cached row |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        for phase in PHASES:
            r = result[phase]
            disk = f"{r['cache_bytes'] / mib:,.0f} MiB" if "cache_bytes" in r and phase == "cache" else ""
            per_row = f"{r['cache_bytes'] / r['cached_rows'] / 1000:,.1f} KB" if disk else ""
            lines.append(
                f"| {result['rows']:,} | {phase} | {r['peak_rss'] / mib:,.0f} | {r['peak_anon'] / mib:,.0f} | "
                f"{disk} | {per_row} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 4000, 16000], help="training rows per run")
    parser.add_argument("--side", type=int, default=224, help="image side of the cache (and the synthetic images)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "memory-benchmark")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--values", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(run_phase(args.phase, json.loads(args.values))))
        return 0
    print(f"generating the synthetic images for {max(args.rows):,} training rows once (not measured) ...", flush=True)
    phase_in_new_process("data", profile(args.work, max(args.rows), args.side, max(args.rows)))
    results = [measure(args.work, rows, args.side, max(args.rows)) for rows in sorted(args.rows)]
    print(table(results))
    first, last = results[0], results[-1]
    for phase in PHASES:
        growth = last[phase]["peak_rss"] / first[phase]["peak_rss"] - 1
        print(f"{phase}: peak RSS {100 * growth:+.0f}% from {first['rows']:,} to {last['rows']:,} rows")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
