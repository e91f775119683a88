"""Training throughput on one device, in one run: the paper-style pipeline against ours, and the rows
that isolate what bounds ours.

    python benchmarks/throughput.py --profile params/gpu.yaml                  # paper scale (GPU)
    python benchmarks/throughput.py --profile params/smoke.yaml --rows 192 --steps 4   # small shapes (CPU)
    python benchmarks/throughput.py --data runs/data/synthetic-KEY --parts b c d e     # a saved set, some rows

(a) paper-style: per-sample PIL decode + CLIPImageProcessor + tokenizer padding to max length inside
    the data set, fp32, plain AdamW, 0 loader processes (and --workers of them, last);
(b) ours: the study's Trainer (training.trainer.make_trainer) over the decode cache, with the
    profile's precision, loader and device cache;
(c) the model alone on one batch of tensors already on the device (the profile's precision), the
    inputs the Trainer feeds it (a frozen text tower's features computed once, as in (b));
(d) the training DataLoader alone: the Trainer's own loader (the profile's workers, pinned memory and
    device placement, or the device cache) with no model, batches waited for on the device;
(e) the Trainer's own cost: the same tiny model (the profile's input shapes, towers 32 wide) on the
    same batches, trained by the Trainer and by a plain loop; the difference in ms per step.
Beside them, the decode cache's build rate and the bare decode + resize limit over the same images
on the same cores (no tokenising, digests or writing): how close building runs to the limit.
Prints samples/s, the speed-up over (a), and MFU (model FLOPs per sample counted by
torch.utils.flop_counter, over the device's dense bf16 peak) where the peak is known.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from helpers.cache.dataset import collate, length_buckets, with_text_features  # noqa: E402
from helpers.cache.store import build_cache, cache_key  # noqa: E402
from helpers.config import load_config  # noqa: E402
from helpers.data.schema import FEATURES  # noqa: E402
from helpers.data.synthetic import make_captions, make_splits_parallel  # noqa: E402
from helpers.inference.cached import autocast_for, pick_device  # noqa: E402
from helpers.modeling.building import build_model  # noqa: E402
from helpers.modeling.compiled import compile_repeated_blocks  # noqa: E402
from helpers.overrides import parse_overrides  # noqa: E402
from helpers.training import precision  # noqa: E402
from helpers.training import trainer as training  # noqa: E402
from helpers.training.arguments import training_arguments

# Dense peaks (no sparsity) by precision and device, FLOP/s: bf16 and TF32 on the tensor cores, and
# plain fp32; a row's MFU is against the peak of the precision it ran in.
PEAKS = {
    "bf16": {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12},
    "tf32": {"H100": 495e12, "H200": 495e12, "A100": 156e12, "L40S": 181e12, "L4": 60e12, "A10": 62.5e12},
    "fp32": {"H100": 67e12, "H200": 67e12, "A100": 19.5e12, "L40S": 91.6e12, "L4": 30.3e12, "A10": 31.2e12},
}


def dense_peak(device_name: str, cfg) -> tuple[str, float | None]:
    """(the precision a training of cfg runs in on this device, its dense peak or None where unknown)."""
    kind = "bf16" if precision.bf16_autocast(cfg.bf16) else "tf32" if cfg.tf32 and torch.cuda.is_available() else "fp32"
    return kind, next((v for k, v in PEAKS[kind].items() if k in device_name), None)


PARTS = ("a", "b", "c", "d", "e")


def training_split(args):
    """The rows trained on: the first --rows of a saved data set's split (--data: made once per
    session), else a synthetic set made here."""
    import datasets

    if args.data:
        split = datasets.load_from_disk(str(args.data))[args.split]
        return split.select(range(min(args.rows, len(split))))
    captions = make_captions(max(1, args.rows // 6), 0)
    rows = make_splits_parallel({"benchmark": captions}, args.image_side, 0, unlabelled_splits=())["benchmark"]
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
        text = self.tokenizer(
            row["Caption"], padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {
            "input_ids": text["input_ids"][0],
            "attention_mask": text["attention_mask"][0],
            "pixel_values": pixels,
            "label_a": torch.tensor(row["Label_A"]),
            "label_b": torch.tensor(row["Label_B"]),
        }


def bare_decode_rows_per_s(split, side: int) -> float:
    """Rows per second of decoding and resizing every image of `split` to `side`, in as many
    threads as the cache builder uses (one per core), with nothing else."""
    from concurrent.futures import ThreadPoolExecutor

    import datasets

    from helpers.data.images import read_image, square_uint8

    cells = split.cast_column("Image", datasets.Image(decode=False))["Image"]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        done = sum(1 for _ in pool.map(lambda cell: square_uint8(read_image(cell), side), cells))
    return done / (time.perf_counter() - started)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_loop(
    model, batches, device, steps, warmup, bf16, fused, per_step: list | None = None, timings: dict | None = None
) -> float:
    """Seconds per step of fwd + bwd + optimiser step over `steps` batches after `warmup` ones
    (per_step, when given, receives each step's seconds, the device waited for at every step;
    timings, when given, the seconds of the warm-up steps as warmup_s)."""
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=fused)
    model.train().to(device)
    started, began = None, time.perf_counter()
    for step, batch in enumerate(batches):
        if step == warmup:
            _sync(device)
            started = time.perf_counter()
            if timings is not None:
                timings["warmup_s"] = started - began
        if step == warmup + steps:
            break
        mark = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast_for(device, bf16):
            loss = model(**batch).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        if per_step is not None and step >= warmup:
            _sync(device)
            per_step.append(time.perf_counter() - mark)
    _sync(device)
    return (time.perf_counter() - started) / steps


def repeat(loader):
    while True:
        yield from loader


def paper_style(model, dataset, cfg, device, args, workers: int) -> float:
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )
    return cfg.batch_size / time_loop(model, repeat(loader), device, args.steps, args.warmup, bf16=False, fused=False)


def flops_per_sample(model, batch, device, bf16) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.to(device).train()
    batch = {k: v.to(device) for k, v in batch.items()}
    with FlopCounterMode(display=False) as counter, autocast_for(device, bf16):
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(batch["label_a"])


def timed_trainer(cfg, model, cached, steps: int, warmup: int, out: str, steps_timed_apart: bool = False):
    """(the study's Trainer over `cached` for warmup + steps steps, no evaluation or saving; the
    callback that clocks steps warmup..warmup + steps)."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.marks, self.per_step = {}, []

        def on_train_begin(self, args, state, control, **kwargs):
            self.marks["start"] = time.perf_counter()

        def on_step_begin(self, args, state, control, **kwargs):
            self.began = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, warmup + steps):
                _sync(args.device)
                self.marks[state.global_step] = time.perf_counter()
            elif warmup < state.global_step < warmup + steps and per_step_sync:
                _sync(args.device)
                self.per_step.append(time.perf_counter() - self.began)

    per_step_sync = steps_timed_apart
    args = training_arguments(cfg.training_spec, Path(out))
    for key, value in dict(
        max_steps=warmup + steps,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        logging_strategy="no",
        disable_tqdm=True,
    ).items():
        setattr(args, key, value)
    clock = Clock()
    return training.make_trainer(cfg.training_spec, model, cached, cached, args, [clock]), clock


def trainer_seconds_per_step(cfg, model, cached, steps, warmup) -> tuple[float, float]:
    """(seconds per step after the warm-up, seconds of the warm-up steps)."""
    with tempfile.TemporaryDirectory() as out:
        trainer, clock = timed_trainer(cfg, model, cached, steps, warmup, out)
        trainer.train()
    return (clock.marks[warmup + steps] - clock.marks[warmup]) / steps, clock.marks[warmup] - clock.marks["start"]


def loader_samples_per_second(cfg, model, cached, steps: int, warmup: int) -> float:
    """(d): the batches of the Trainer's own training loader, on the device; the model only builds
    the Trainer (and a frozen text tower's features), it never runs."""
    with tempfile.TemporaryDirectory() as out:
        trainer, _ = timed_trainer(cfg, model, cached, steps, warmup, out)
        device, seen, started = trainer.args.device, 0, None
        for step, batch in enumerate(repeat(trainer.get_train_dataloader())):
            if step == warmup:
                _sync(device)
                started, seen = time.perf_counter(), 0
            if step == warmup + steps:
                break
            batch["pixel_values"].to(device, non_blocking=True)
            seen += len(batch["label_a"])
        _sync(device)
    return seen / (time.perf_counter() - started)


def tiny_config(cfg, side: int):
    """The profile with towers 32 wide and one layer deep (a BERT and a CLIP vision tower at the
    cache's image side): the step costs almost nothing, so what remains is the training loop's."""
    return dataclasses.replace(
        cfg,
        text_encoder="bert",
        text_init="random",
        tokenizer=cfg.tokenizer or cfg.text_encoder,
        text_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
        vision_encoder="clip_vision_model",
        vision_init="random",
        vision_input="pixels",
        freeze_text=False,
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": side,
            "patch_size": side // 4,
        },
        fusion_dim=32,
        image_size=side,
    )


def trainer_overhead(cfg, cached, steps: int, warmup: int, device) -> dict:
    """(e): the median ms of a step of the tiny model under the Trainer and under a plain loop over
    the same batches (the Trainer's own loader, so both read the same data the same way), the
    device waited for at each step's end; medians, so an epoch's start is not counted as a step."""
    tiny = tiny_config(cfg, cached.pixels.shape[-1])
    model, _ = build_model(tiny.model_spec)
    with tempfile.TemporaryDirectory() as out:
        trainer, clock = timed_trainer(tiny, model, cached, steps, warmup, out, steps_timed_apart=True)
        trainer.train()
        model, _ = build_model(tiny.model_spec)
        loop = []
        time_loop(
            model,
            repeat(trainer.get_train_dataloader()),
            device,
            steps,
            warmup,
            bf16=precision.bf16_autocast(tiny.bf16),
            fused=True,
            per_step=loop,
        )
    trainer_ms, loop_ms = 1000 * float(np.median(clock.per_step)), 1000 * float(np.median(loop))
    return {
        "e_trainer_ms_per_step": trainer_ms,
        "e_plain_loop_ms_per_step": loop_ms,
        "e_trainer_overhead_ms_per_step": trainer_ms - loop_ms,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="params/gpu.yaml")
    parser.add_argument("--data", type=Path, help="a saved data set (DatasetDict folder) to train on, made once")
    parser.add_argument("--split", default="train", help="its split (with --data)")
    parser.add_argument("--rows", type=int, default=3072, help="rows to train on")
    parser.add_argument("--image-side", type=int, default=384, help="side of the synthetic AI images (without --data)")
    parser.add_argument("--cache-root", type=Path, help="where the decode cache is kept (default: a temporary folder)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--workers", type=int, default=8, help="data-loader processes for the second paper-style run")
    parser.add_argument("--out", help="also write the figures as JSON here")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a profile key, e.g. --set bf16=false --set torch_compile=true",
    )
    args = parser.parse_args(argv)
    cfg = load_config(args.profile, parse_overrides(args.set))
    device = pick_device()
    torch.manual_seed(0)
    precision.apply_tf32(cfg.tf32)
    results = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "profile": cfg.profile,
        "batch_size": cfg.batch_size,
        "bf16": cfg.bf16,
        "tf32": cfg.tf32,
        "torch_compile": cfg.torch_compile,
        "num_workers": cfg.num_workers,
        "device_cache": cfg.device_cache,
        "rows": args.rows,
    }

    def keep() -> None:
        """The figures so far, written after each part: a part stopped at its limit loses only itself."""
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2))

    split = training_split(args)
    model, tokenizer = build_model(cfg.model_spec)
    side = model.config.image_size
    bf16 = precision.bf16_autocast(cfg.bf16)
    if "a" in args.parts:
        from transformers import CLIPImageProcessor

        processor = CLIPImageProcessor(
            size={"shortest_edge": side},
            crop_size={"height": side, "width": side},
            image_mean=model.config.image_mean,
            image_std=model.config.image_std,
        )
        paper = PaperStyle(split, tokenizer, processor, cfg.max_caption_length)
        results["a_paper_style_workers0"] = paper_style(model, paper, cfg, device, args, workers=0)
        keep()
    with tempfile.TemporaryDirectory() as scratch:
        results["bare_decode_rows_per_s"] = bare_decode_rows_per_s(split, side)
        root = Path(args.cache_root or scratch)
        kept = (root / f"bench-{cache_key(split, side, tokenizer, cfg.max_caption_length)}" / "meta.json").is_file()
        started = time.perf_counter()
        cached = build_cache(split, "bench", root, side, tokenizer, cfg.max_caption_length)
        results["cache_seconds"] = time.perf_counter() - started
        if not kept:
            results["cache_build_rows_per_s"] = len(split) / results["cache_seconds"]
        keep()
        if "d" in args.parts:
            results["d_loader_alone"] = loader_samples_per_second(cfg, model, cached, args.steps, args.warmup)
            keep()
        if "b" in args.parts:
            per_step, results["b_warmup_s"] = trainer_seconds_per_step(cfg, model, cached, args.steps, args.warmup)
            results["b_ours_from_cache"] = cfg.batch_size / per_step
            keep()
        if "e" in args.parts:
            results.update(trainer_overhead(cfg, cached, args.steps, args.warmup, device))
            keep()
        if model.config.freeze_text and model.config.modality != "image":  # as the Trainer feeds it (b)
            cached = with_text_features(cached, model, cfg.eval_batch_size)
        # The text padded to the widths (b)'s collator uses under compilation: the graph (b) compiled,
        # not a second one for this batch's own width.
        widths = length_buckets(cfg.max_caption_length) if cfg.torch_compile else ()
        on_device = collate(cached.__getitems__(np.arange(min(cfg.batch_size, len(cached)))), widths=widths)
        # The same rows with every caption padded to max_caption_length, as (a) feeds them: one
        # model FLOP count that every row's MFU can be read against, whatever its own padding.
        full_width = collate(
            cached.__getitems__(np.arange(min(cfg.batch_size, len(cached)))), widths=(cfg.max_caption_length,)
        )
    if "c" in args.parts:
        resident = [{k: v.to(device) for k, v in on_device.items()}] * (args.steps + args.warmup + 1)
        if cfg.torch_compile:  # as the study compiles (b)'s model (in place, so perhaps again here)
            compile_repeated_blocks(model)
        timings = {}
        results["c_model_alone"] = cfg.batch_size / time_loop(
            model, iter(resident), device, args.steps, args.warmup, bf16=bf16, fused=True, timings=timings
        )
        results["c_warmup_s"] = timings["warmup_s"]
        keep()
    if "a" in args.parts and args.workers:  # last: loader processes compete with the main process for the CPU
        results[f"a_paper_style_workers{args.workers}"] = paper_style(model, paper, cfg, device, args, args.workers)
        keep()
    per_sample = flops_per_sample(model, on_device, device, bf16)
    results["model_gflop_per_sample"] = per_sample / 1e9
    at_full = flops_per_sample(model, full_width, device, bf16)
    results[f"model_gflop_per_sample_at_{cfg.max_caption_length}_tokens"] = at_full / 1e9
    results["peak_precision"], peak = dense_peak(results["device"], cfg)
    print(
        f"device: {results['device']} · profile {cfg.profile} · batch {cfg.batch_size} · {args.rows} rows · "
        f"{per_sample / 1e9:.3g} GFLOP per sample (fwd+bwd)"
    )
    baseline = results.get("a_paper_style_workers0")
    for key in sorted(k for k in results if k[:2] in ("a_", "b_", "c_", "d_") and not k.endswith("_mfu")):
        mfu = f"{100 * results[key] * per_sample / peak:.1f} % MFU" if peak else "MFU n/a (peak unknown)"
        speedup = f"x{results[key] / baseline:6.1f}" if baseline else ""
        print(f"  {key:28s} {results[key]:10.1f} samples/s   {speedup}   {mfu if key[0] != 'd' else ''}")
        results[f"{key}_mfu"] = results[key] * per_sample / peak if peak and key[0] != "d" else None
        results[f"{key}_mfu_at_{cfg.max_caption_length}_tokens"] = (
            results[key] * at_full / peak if peak and key[0] != "d" else None
        )
    if "b_ours_from_cache" in results and "c_model_alone" in results:
        results["b_over_c"] = results["b_ours_from_cache"] / results["c_model_alone"]
        print(f"  (b) / (c): {results['b_over_c']:.2f}")
    warm = {k[0]: results[k] for k in ("b_warmup_s", "c_warmup_s") if k in results}
    print(
        "  warm-up (the first --warmup steps, compilation included): "
        + ", ".join(f"({part}) {seconds:.1f} s" for part, seconds in warm.items())
    )
    if "e_trainer_ms_per_step" in results:
        print(
            f"  (e) tiny model: Trainer {results['e_trainer_ms_per_step']:.1f} ms/step, plain loop "
            f"{results['e_plain_loop_ms_per_step']:.1f}: the Trainer's own cost "
            f"{results['e_trainer_overhead_ms_per_step']:.1f} ms/step"
        )
    if "cache_build_rows_per_s" in results:
        results["cache_build_share_of_decode_limit"] = (
            results["cache_build_rows_per_s"] / results["bare_decode_rows_per_s"]
        )
        print(
            f"  cache build: {results['cache_build_rows_per_s']:.0f} rows/s on {os.cpu_count()} cores; bare decode + "
            f"resize {results['bare_decode_rows_per_s']:.0f} rows/s: "
            f"{100 * results['cache_build_share_of_decode_limit']:.0f} % of the limit"
        )
    keep()
    return 0


if __name__ == "__main__":
    sys.exit(main())
