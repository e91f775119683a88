"""Images per second of `helpers.predict` on a folder of realistic files, with the default decode
workers (one per core) and, unless --no-single, with one, against a bare decode + resize pass over
the same files on the same cores (no model): the ratio says how close scoring runs to the decode limit.

    python benchmarks/predict_speed.py                       # the demo model if trained, else a fresh smoke model
    python benchmarks/predict_speed.py --model runs/demo/model_after --photos 600 --pngs 150

The folder holds 640x480 JPEG photographs (noise on smooth content, quality 90) and 1024x1024
PNG images, the sizes that make decoding, not the model, the cost on a CPU. It is written once,
on every core, and kept under --work (writing 800 + 200 files one by one took 57 s of a 2-core
AMD EPYC: most of what a session's 90 s went on before scoring began).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def write_file(folder: Path, i: int, photos: int) -> None:
    name = folder / (f"photo_{i:05d}.jpg" if i < photos else f"render_{i:05d}.png")
    if name.exists():
        return
    rng = np.random.default_rng(i)
    width, height = (640, 480) if i < photos else (1024, 1024)
    coarse = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(coarse, np.float32) + rng.normal(0, 8, (height, width, 3)).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    image.save(name, quality=90) if i < photos else image.save(name)


def write_folder(folder: Path, photos: int, pngs: int) -> Path:
    """The files, each written once (kept between runs), on every core."""
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    count = photos + pngs
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(write_file, [folder] * count, range(count), [photos] * count, chunksize=16))
    return folder


def model_dir(requested: str | None, work: Path) -> str:
    if requested:
        return requested
    demo = ROOT / "runs" / "demo" / "model_after"
    if (demo / "config.json").is_file():
        return str(demo)
    from helpers.config import load_config
    from helpers.modeling.building import build_model
    from helpers.modeling.checkpoints import save_detector

    model, tokenizer = build_model(load_config(ROOT / "params" / "smoke.yaml").model_spec)
    return str(save_detector(model, tokenizer, work / "smoke_model"))


def bare_decode_rate(folder: Path, size: int, workers: int) -> float:
    """Images per second of decoding and resizing every file to the model's input, in `workers`
    processes, with nothing else: the limit a scorer on these cores can approach."""
    from concurrent.futures import ProcessPoolExecutor

    from helpers.data.images import decode_many

    files = [str(p) for p in sorted(folder.iterdir())]
    chunks = [files[i : i + 32] for i in range(0, len(files), 32)]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        decoded = sum(len(part) for part in pool.map(decode_many, chunks, [size] * len(chunks), [None] * len(chunks)))
    return decoded / (time.perf_counter() - started)


def rate(model: str, folder: Path, out: Path, workers: int) -> float:
    """Images per second of the scoring itself (the run's own clock: decode workers and model, not
    loading the model, starting the workers or writing the CSV, which do not grow with the files)."""
    from helpers.predict import run

    return run(model, str(folder), str(out), workers=workers).images_per_second


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a saved detector (default: runs/demo/model_after, else a fresh smoke model)")
    parser.add_argument("--photos", type=int, default=400, help="640x480 JPEG files")
    parser.add_argument("--pngs", type=int, default=100, help="1024x1024 PNG files")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "predict-speed")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    parser.add_argument("--no-single", action="store_true", help="skip the one-worker pass")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    folder = write_folder(args.work / "images", args.photos, args.pngs)
    results = {
        "images": args.photos + args.pngs,
        "cores": os.cpu_count(),
        "write_seconds": time.perf_counter() - started,
    }
    model = results["model"] = model_dir(args.model, args.work)
    warm = args.work / "warm"
    warm.mkdir(exist_ok=True)
    for path in sorted(folder.iterdir())[:16]:  # model load, kernels and the first files' pages, before timing
        (warm / path.name).unlink(missing_ok=True)
        (warm / path.name).symlink_to(path)
    rate(model, warm, args.work / "warmup.csv", 0)
    size = json.loads((Path(model) / "config.json").read_text())["image_size"]
    results["bare_decode"] = bare_decode_rate(folder, size, os.cpu_count() or 1)
    results["workers_default"] = rate(model, folder, args.work / "default.csv", os.cpu_count() or 1)
    results["share_of_decode_limit"] = results["workers_default"] / results["bare_decode"]
    print(
        f"{results['images']} images ({args.photos} JPEG 640x480, {args.pngs} PNG 1024x1024), model {model}; "
        f"files written in {results['write_seconds']:.1f} s"
    )
    if not args.no_single:
        results["workers_1"] = rate(model, folder, args.work / "one.csv", 1)
        results["speedup"] = results["workers_default"] / results["workers_1"]
        print(f"1 decode worker:             {results['workers_1']:.1f} images/s")
    print(f"{results['cores']} decode workers (default): {results['workers_default']:.1f} images/s")
    print(
        f"bare decode + resize, {results['cores']} processes, no model: {results['bare_decode']:.1f} images/s; "
        f"scoring runs at {100 * results['share_of_decode_limit']:.0f}% of it"
    )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
