"""Training throughput on one device, in one run: the paper-style pipeline against ours.

    python benchmarks/throughput.py --profile params/gpu.yaml            # paper scale (GPU)
    python benchmarks/throughput.py --profile params/smoke.yaml --rows 192 --steps 4   # small shapes (CPU)

(a) paper-style: per-sample PIL decode + CLIPImageProcessor + tokenizer padding to max length inside
    the data set, fp32, plain AdamW (with 0 and with --workers data-loader processes);
(b) ours: decode cache (built once, timed apart), HF Trainer with bf16 autocast on CUDA, fused
    AdamW, SDPA, text trimmed per batch;
(c) the model alone on tensors already on the device (bf16 on CUDA).
Prints samples/s, the speed-up over (a), and MFU (model FLOPs per sample counted by
torch.utils.flop_counter, over the device's dense bf16 peak) where the peak is known.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from helpers.cache.dataset import collate  # noqa: E402
from helpers.cache.store import build_cache  # noqa: E402
from helpers.config import load_config  # noqa: E402
from helpers.overrides import parse_overrides  # noqa: E402
from helpers.data.schema import FEATURES  # noqa: E402
from helpers.inference.cached import autocast_for, pick_device  # noqa: E402
from helpers.modeling.building import build_model  # noqa: E402
from helpers.data.synthetic import make_captions, make_splits_parallel  # noqa: E402
from helpers.training.trainer import training_arguments  # noqa: E402

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}


def synthetic_split(rows: int, image_side: int, seed: int = 0):
    import datasets

    captions = make_captions(max(1, rows // 6), seed)
    rows = make_splits_parallel({"benchmark": captions}, image_side, seed, unlabelled_splits=())["benchmark"]
    return datasets.Dataset.from_dict(rows, features=FEATURES)


class PaperStyle(torch.utils.data.Dataset):
    """What a Trainer-defaults pipeline does: decode and preprocess every sample, every epoch."""

    def __init__(self, split, tokenizer, processor, max_length):
        self.split, self.tokenizer, self.processor, self.max_length = split, tokenizer, processor, max_length

    def __len__(self):
        return len(self.split)

    def __getitem__(self, index):
        row = self.split[index]
        image = Image.open(io.BytesIO(row["Image"]["bytes"])).convert("RGB")
        pixels = self.processor(images=image, return_tensors="pt")["pixel_values"][0]
        text = self.tokenizer(row["Caption"], padding="max_length", truncation=True, max_length=self.max_length,
                              return_tensors="pt")
        return {"input_ids": text["input_ids"][0], "attention_mask": text["attention_mask"][0], "pixel_values": pixels,
                "label_a": torch.tensor(row["Label_A"]), "label_b": torch.tensor(row["Label_B"])}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_loop(model, batches, device, steps, warmup, bf16, fused) -> float:
    """samples/s of fwd + bwd + optimiser step over `steps` batches after `warmup` ones."""
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=fused)
    model.train().to(device)
    seen, started = 0, None
    for step, batch in enumerate(batches):
        if step == warmup:
            _sync(device)
            started, seen = time.perf_counter(), 0
        if step == warmup + steps:
            break
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast_for(device, bf16):
            loss = model(**batch).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        seen += len(batch["label_a"])
    _sync(device)
    return seen / (time.perf_counter() - started)


def repeat(loader):
    while True:
        yield from loader


def paper_style(model, dataset, cfg, device, args, workers: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True, pin_memory=device.type == "cuda")
    return time_loop(model, repeat(loader), device, args.steps, args.warmup, bf16=False, fused=False)


def flops_per_sample(model, batch, device, bf16) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.to(device).train()
    batch = {k: v.to(device) for k, v in batch.items()}
    with FlopCounterMode(display=False) as counter, autocast_for(device, bf16):
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(batch["label_a"])


def trainer_samples_per_second(cfg, model, cached, steps, warmup) -> float:
    """Ours end to end: the study's Trainer settings, timed between step `warmup` and the last."""
    from transformers import Trainer, TrainerCallback

    marks = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, warmup + steps):
                _sync(pick_device())
                marks[state.global_step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        args = training_arguments(cfg, Path(out))
        args = dataclasses.replace(args, max_steps=warmup + steps, eval_strategy="no", save_strategy="no",
                                   load_best_model_at_end=False, logging_strategy="no", disable_tqdm=True)
        Trainer(model=model, args=args, train_dataset=cached, data_collator=collate,
                callbacks=[Clock()]).train()
    return steps * cfg.batch_size / (marks[warmup + steps] - marks[warmup])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="params/gpu.yaml")
    parser.add_argument("--rows", type=int, default=3072, help="synthetic rows to train on")
    parser.add_argument("--image-side", type=int, default=384, help="side of the synthetic AI images (real ones vary)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8, help="data-loader processes for the second paper-style run")
    parser.add_argument("--out", help="also write the figures as JSON here")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a profile key, e.g. --set bf16=false --set torch_compile=true")
    args = parser.parse_args(argv)
    cfg = load_config(args.profile, parse_overrides(args.set))
    device = pick_device()
    torch.manual_seed(0)
    from helpers.training import precision

    precision.apply_tf32(cfg)
    results = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
               "profile": cfg.profile, "batch_size": cfg.batch_size, "bf16": cfg.bf16, "tf32": cfg.tf32,
               "torch_compile": cfg.torch_compile}
    split = synthetic_split(args.rows, args.image_side)
    model, tokenizer = build_model(cfg)
    from transformers import CLIPImageProcessor

    side = model.config.image_size
    processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                   image_mean=model.config.image_mean, image_std=model.config.image_std)
    paper = PaperStyle(split, tokenizer, processor, cfg.max_caption_length)
    results["a_paper_style_workers0"] = paper_style(model, paper, cfg, device, args, workers=0)
    with tempfile.TemporaryDirectory() as cache_root:
        started = time.perf_counter()
        cached = build_cache(split, "bench", cache_root, side, tokenizer, cfg.max_caption_length)
        results["cache_build_rows_per_s"] = len(split) / (time.perf_counter() - started)
        results["b_ours_from_cache"] = trainer_samples_per_second(cfg, model, cached, args.steps, args.warmup)
        on_device = collate(cached.__getitems__(np.arange(min(cfg.batch_size, len(cached)))))
    resident = [{k: v.to(device) for k, v in on_device.items()}] * (args.steps + args.warmup + 1)
    bf16 = device.type == "cuda" and cfg.bf16
    alone = torch.compile(model) if cfg.torch_compile else model
    results["c_model_alone"] = time_loop(alone, iter(resident), device, args.steps, args.warmup, bf16=bf16,
                                         fused=device.type == "cuda")
    if args.workers:  # last: loader processes compete with the main process for the CPU while they live
        results[f"a_paper_style_workers{args.workers}"] = paper_style(model, paper, cfg, device, args, args.workers)
    per_sample = flops_per_sample(model, on_device, device, bf16)
    results["model_gflop_per_sample"] = per_sample / 1e9
    peak = next((v for k, v in PEAK_BF16.items() if k in results["device"]), None)
    baseline = results["a_paper_style_workers0"]
    print(f"device: {results['device']} · profile {cfg.profile} · batch {cfg.batch_size} · "
          f"{per_sample / 1e9:.3g} GFLOP per sample (fwd+bwd)")
    for key in sorted(k for k in results if k[:2] in ("a_", "b_", "c_")):
        mfu = f"{100 * results[key] * per_sample / peak:.1f} % MFU" if peak else "MFU n/a (peak unknown)"
        print(f"  {key:28s} {results[key]:10.1f} samples/s   x{results[key] / baseline:6.1f}   {mfu}")
        results[f"{key}_mfu"] = results[key] * per_sample / peak if peak else None
    print(f"  cache build: {results['cache_build_rows_per_s']:.0f} rows/s")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
