"""The parts of benchmarks/gpu_session.sh, run in a fixed order, each in a process of its own under
its own time limit, within a budget for the whole session; after each part its rows are appended
to OUTDIR/gpu_session.json and the table OUTDIR/gpu_session.md is written again, so a session
stopped at any point keeps every finished row. --smoke runs the same code paths on a CPU with tiny
shapes (the smoke profile) so that the script cannot rot.

The text tower of the gpu profile is a random-init BERT of the paper's size with the bert-base
vocabulary shipped in this package (the offline model's wheel is too large to carry): the
measurement is speed, not accuracy."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# (name, profile keys): the precisions measured, eager and compiled, the most telling first.
PRECISIONS = {
    "bf16": {"bf16": "true", "tf32": "true"},
    "tf32": {"bf16": "false", "tf32": "true"},
    "fp32": {"bf16": "false", "tf32": "false"},
}
PIPELINES = {
    "a_paper_style_workers0": "(a) paper-style pipeline",
    "b_ours_from_cache": "(b) ours, from the decode cache",
    "c_model_alone": "(c) model alone, tensors on the device",
}
# What each row is held to (issue 36; docs/measurements.md).
TARGETS = {
    "b_ours_from_cache": ">= 90 % of (c)",
    "compiled": "warm in <= 90 s, then >= 1.8x (c) eager",
    "notebooks": "<= 90 s",
    "predict_cache": ">= 10,000 images/s on >= 9,000",
    "decode": ">= 80 % of the decode limit",
}
# The data every part reads, made once per session on every core: the gpu profile's synthetic set at
# the notebooks' reduced size (10,800 rows), and the files prediction reads.
NOTEBOOK_CAPTIONS = "{train: 1200, validation: 150, test: 150, unlabelled: 300}"
# At least 4,000 files on the GPU: scoring them takes seconds, so a fixed cost cannot pass for a rate.
FILES = {"smoke": ["--photos", "12", "--pngs", "4"], "gpu": ["--photos", "3200", "--pngs", "800"]}
PART_LIMIT = 480  # no row may take longer than 8 minutes


def run_part(command: list[str], limit: float) -> tuple[str, float, str]:
    """(status, seconds, the end of its output) of one part run as a process under `limit` seconds.
    The part starts a session of its own, and at its limit the whole group is killed: the workers,
    kernels and torchrun processes it started too, which would otherwise hold the GPU."""
    import os
    import signal

    started = time.perf_counter()
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    ) as process:
        try:
            output, _ = process.communicate(timeout=limit)
            status = "ok" if process.returncode == 0 else f"failed (exit {process.returncode})"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            status = f"stopped at its limit of {limit:.0f} s"
    return status, round(time.perf_counter() - started, 1), (output or "")[-1500:]


class PeakGpuMemory:
    """The largest memory.used nvidia-smi reports while the block runs (all processes on GPU 0)."""

    def __enter__(self):
        self.peak, self._stop = None, threading.Event()
        if shutil.which("nvidia-smi"):
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            used = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            if used:
                self.peak = max(self.peak or 0, int(float(used)))
            self._stop.wait(0.5)

    def __exit__(self, *exc):
        self._stop.set()


def commit() -> str:
    """The commit measured: git's, or where the copy has no .git (the lent machine's), the one
    `gpu_kit.py download` wrote beside the wheels it carries."""
    found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if found.returncode == 0:
        return found.stdout.strip()
    written = ROOT / ".whl" / "COMMIT"
    return written.read_text().strip() if written.is_file() else "unknown"


def environment() -> dict:
    import torch
    import transformers

    row = {
        "part": "environment",
        "status": "ok",
        "commit": commit(),
        "device": "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
        "disk_free_gib": round(shutil.disk_usage(ROOT).free / 2**30, 1),
    }
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        row.update(
            device=torch.cuda.get_device_name(0),
            gpu_free_gib=round(free / 2**30, 1),
            gpu_total_gib=round(total / 2**30, 1),
            cuda=torch.version.cuda,
        )
        smi = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
            ).stdout.strip()
            if shutil.which("nvidia-smi")
            else ""
        )
        row["driver"] = smi or None
    return row


def profile_of(smoke: bool) -> str:
    return "params/smoke.yaml" if smoke else "params/gpu.yaml"


def data_overrides(smoke: bool) -> list[str]:
    return [] if smoke else ["--set", f"synthetic_captions={NOTEBOOK_CAPTIONS}", "--set", "epochs=2"]


def make_data(work: Path, smoke: bool) -> str:
    """In its own process: the session's synthetic set (as the notebooks will ask for it, so they
    find it made) and the files prediction reads, each on every core; prints the set's folder."""
    import os

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import predict_speed
    from helpers.config import load_config
    from helpers.data.sources import ensure_synthetic
    from helpers.overrides import parse_overrides

    overrides = data_overrides(smoke)[1::2]
    cfg = load_config(ROOT / profile_of(smoke), parse_overrides(overrides))
    started = time.perf_counter()
    folder = ensure_synthetic(work / "runs" / "data", dict(cfg.synthetic_captions), cfg.synthetic_image_size, cfg.seed)
    made = time.perf_counter() - started
    files = FILES["smoke" if smoke else "gpu"]
    predict_speed.write_folder(work / "predict-files" / "images", int(files[1]), int(files[3]))
    rows = 6 * sum(cfg.synthetic_captions.values())
    (work / "data.json").write_text(
        json.dumps(
            {
                "folder": str(folder),
                "rows": rows,
                "seconds": round(made, 1),
                "rows_per_s": round(rows / made, 1),
                "cores": os.cpu_count(),
                "files_seconds": round(time.perf_counter() - started - made, 1),
            }
        )
    )
    return str(folder)


def data_rows(work: Path, smoke: bool, limit: float) -> list[dict]:
    status, seconds, output = run_part(
        [sys.executable, __file__, "--make-data", "--work", str(work), *(["--smoke"] if smoke else [])], limit
    )
    row = {"part": "synthetic data and prediction files, made once", "status": status, "seconds": seconds}
    if status == "ok":
        row.update(json.loads((work / "data.json").read_text()))
    else:
        row["output"] = output
    return [row]


def throughput_rows(work: Path, smoke: bool, precision: str, compiled: bool, limit: float) -> list[dict]:
    """The training rows of one precision: (a)-(c) and, eager, (d), (e) and the cache build; under
    compilation the warm-up seconds. Over the session's data set, rows within one epoch."""
    name = f"{precision}, {'compiled' if compiled else 'eager'}"
    result = work / f"throughput_{precision}_{'compiled' if compiled else 'eager'}.json"
    data = json.loads((work / "data.json").read_text())["folder"]
    # At least 10 timed steps on the GPU (6 steps were half a second: too short to read a rate from).
    shape = (
        ["--rows", "96", "--steps", "2", "--warmup", "1"]
        if smoke
        else ["--rows", "3072", "--steps", "12", "--warmup", "2"]
    )
    # (a), the authors'-style pipeline, is CPU-bound and was measured (79 samples/s on the H200, 776d712):
    # the GPU session leaves it out; --smoke keeps its code path running.
    parts = ["b", "c"] if compiled else (["a", "b", "c", "d", "e"] if smoke else ["b", "c", "d", "e"])
    keys = [
        a
        for key, value in {**PRECISIONS[precision], "torch_compile": str(compiled).lower()}.items()
        for a in ("--set", f"{key}={value}")
    ]
    status, seconds, output = run_part(
        [
            sys.executable,
            "benchmarks/throughput.py",
            "--profile",
            profile_of(smoke),
            "--data",
            data,
            *shape,
            "--parts",
            *parts,
            "--workers",
            "0",
            "--cache-root",
            str(work / "runs" / "bench-cache"),
            *keys,
            "--out",
            str(result),
        ],
        limit,
    )
    if not result.is_file():
        return [{"part": f"training throughput, {name}", "status": status, "seconds": seconds, "output": output}]
    # throughput.py writes its figures after each of its parts: a run stopped at its limit keeps them.
    found = json.loads(result.read_text())
    full = next((k for k in found if k.startswith("model_gflop_per_sample_at_")), None)
    rows = [
        {
            "part": f"training {PIPELINES[key]}, {name}",
            "status": "ok",
            "seconds": seconds,
            "samples_per_s": round(found[key], 1),
            "mfu": found.get(f"{key}_mfu"),
            "mfu_at_full_width": found.get(f"{key}_mfu{full[len('model_gflop_per_sample') :]}") if full else None,
            "peak_precision": found.get("peak_precision"),
            "target": TARGETS["compiled"] if compiled and key != "a_paper_style_workers0" else TARGETS.get(key, ""),
            "gflop_per_sample": round(found["model_gflop_per_sample"], 2)
            if "model_gflop_per_sample" in found
            else None,
        }
        for key in PIPELINES
        if key in found
    ]
    if status != "ok":
        rows.append({"part": f"training throughput, {name}: the rest", "status": status, "output": output})
    for row, key in zip(rows, [k for k in PIPELINES if k in found]):
        if f"{key[0]}_warmup_s" in found:
            row["warmup_s"] = round(found[f"{key[0]}_warmup_s"], 1)
    if "b_over_c" in found:
        rows[-1]["b_over_c"] = round(found["b_over_c"], 3)
    if "d_loader_alone" in found:
        rows.append(
            {
                "part": f"training (d) the DataLoader alone, {name}",
                "status": "ok",
                "samples_per_s": round(found["d_loader_alone"], 1),
            }
        )
    if "e_trainer_overhead_ms_per_step" in found:
        rows.append(
            {
                "part": f"training (e) the Trainer's own cost (tiny model), {name}",
                "status": "ok",
                "ms_per_step": round(found["e_trainer_overhead_ms_per_step"], 2),
                "trainer_ms": round(found["e_trainer_ms_per_step"], 2),
                "loop_ms": round(found["e_plain_loop_ms_per_step"], 2),
            }
        )
    if "cache_build_rows_per_s" in found:
        rows.append(
            {
                "part": "decode cache build, beside the bare decode + resize limit",
                "status": "ok",
                "rows_per_s": round(found["cache_build_rows_per_s"], 1),
                "decode_limit_per_s": round(found["bare_decode_rows_per_s"], 1),
                "share_of_decode_limit": round(found["cache_build_share_of_decode_limit"], 2),
                "target": TARGETS["decode"],
            }
        )
    return rows


def notebook_rows(work: Path, smoke: bool, limit: float) -> list[dict]:
    """Notebooks 01-04 of the gpu profile on a reduced row count (smoke: of the smoke profile), run
    by the engine as the study runs them (its rules explore and evaluate, and what evaluate needs)."""
    import os

    places = [f"work_dir={work / 'runs'}", f"report_dir={work / 'reports'}"]
    with PeakGpuMemory() as memory:
        status, seconds, output = run_part(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--snakefile",
                "workflow/Snakefile",
                "--cores",
                str(os.cpu_count() or 1),
                "--config",
                f"profile={profile_of(smoke)}",
                *data_overrides(smoke)[1::2],
                *places,
                "--",
                "explore",
                "evaluate",
            ],
            limit,
        )
    caches = [json.loads(m.read_text()) for m in (work / "runs" / "cache").glob("*/meta.json")]
    row = {
        "part": "notebooks 01-04" + (" (smoke profile)" if smoke else " (gpu profile, 10,800 rows, 2 epochs)"),
        "status": status,
        "seconds": seconds,
        "cache_build_s": round(sum(c.get("build_seconds", 0) for c in caches), 1),
        "peak_gpu_mib": memory.peak,
        "target": TARGETS["notebooks"],
    }
    executed = sorted((work / "reports").glob("*/0[1-4]_*.ipynb"))
    if executed:
        row["per_notebook_s"] = {
            notebook.name[:2]: round(json.loads(notebook.read_text())["metadata"]["papermill"]["duration"], 1)
            for notebook in executed
        }
    if status != "ok":
        row["output"] = output
    return [row]


def predict_cache(model: str, caches: list[str], result: str, batch: int) -> None:
    """In its own process: images/s of the final model over the notebooks' decode caches together
    (every split: 10,800 images on the gpu profile), as notebook 04 predicts."""
    from helpers.cache.dataset import CachedSplit
    from helpers.cache.store import open_cache
    from helpers.inference.cached import pick_device, predict
    from helpers.modeling.checkpoints import load_detector

    detector, _ = load_detector(model, pick_device())
    cached = CachedSplit.concat([open_cache(Path(cache)) for cache in caches])
    predict(
        detector, cached.subset(np.arange(min(len(cached), 4 * batch))), batch, desc=None
    )  # warm-up: kernels, pages
    started = time.perf_counter()
    predict(detector, cached, batch, desc=None)
    rate = len(cached) / (time.perf_counter() - started)
    Path(result).write_text(json.dumps({"images": len(cached), "images_per_s": round(rate, 1)}))


def predict_rows(work: Path, smoke: bool, limit: float) -> list[dict]:
    model = next((work / "runs").glob("*/model_after"), None)
    caches = sorted(str(meta.parent) for meta in (work / "runs" / "cache").glob("*/meta.json"))
    if model is None or not caches:
        return [{"part": "prediction", "status": "skipped: the notebooks part saved no model or cache"}]
    result = work / "predict_cache.json"
    status, seconds, output = run_part(
        [
            sys.executable,
            __file__,
            "--predict-cache",
            str(model),
            str(result),
            *caches,
            "--batch",
            "64" if smoke else "1024",
        ],
        limit / 2,
    )
    row = {
        "part": "prediction from the decode cache",
        "status": status,
        "seconds": seconds,
        "target": TARGETS["predict_cache"],
    }
    if status == "ok":
        row.update(json.loads(result.read_text()))
    rows = [row]
    status, seconds, output = run_part(
        [
            sys.executable,
            "benchmarks/predict_speed.py",
            "--model",
            str(model),
            *FILES["smoke" if smoke else "gpu"],
            "--no-single",
            "--out",
            str(work / "predict-files"),
            "--out",
            str(work / "predict_files.json"),
        ],
        limit / 2,
    )
    row = {
        "part": "prediction from files (helpers.predict)",
        "status": status,
        "seconds": seconds,
        "target": TARGETS["decode"],
    }
    if status == "ok":
        found = json.loads((work / "predict_files.json").read_text())
        row.update(
            images=found["images"],
            images_per_s=round(found["workers_default"], 1),
            decode_limit_per_s=round(found["bare_decode"], 1),
            share_of_decode_limit=round(found["share_of_decode_limit"], 2),
        )
    else:
        row["output"] = output
    return rows + [row]


def write_tables(out: Path, rows: list[dict]) -> None:
    (out / "gpu_session.json").write_text(json.dumps(rows, indent=2))
    device = next((r for r in rows if r["part"] == "environment"), {})
    lines = [
        f"Device: {device.get('device')} · torch {device.get('torch')} · transformers {device.get('transformers')}"
        f" · commit {device.get('commit', 'unknown')[:12]} · {time.strftime('%Y-%m-%d')}",
        "",
        "| part | status | figure | MFU | target | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        figure = (
            f"{row['samples_per_s']:,} samples/s"
            + (f" (warm-up {row['warmup_s']} s)" if "warmup_s" in row else "")
            + (f"; (b)/(c) {row['b_over_c']}" if "b_over_c" in row else "")
            if "samples_per_s" in row
            else f"{row['ms_per_step']} ms/step (Trainer {row['trainer_ms']}, loop {row['loop_ms']})"
            if "ms_per_step" in row
            else f"{row['rows_per_s']:,} rows/s"
            + (f" of {row['rows']:,} on {row['cores']} cores" if "cores" in row else "")
            + (f"; decode limit {row['decode_limit_per_s']:,}/s" if "decode_limit_per_s" in row else "")
            if "rows_per_s" in row
            else f"{row['images_per_s']:,.0f} images/s of {row['images']:,}"
            + (f"; decode limit {row['decode_limit_per_s']:,}/s" if "decode_limit_per_s" in row else "")
            if "images_per_s" in row
            else ", ".join(f"{k} {v} s" for k, v in row.get("per_notebook_s", {}).items())
            + (
                f"; cache {row['cache_build_s']} s; peak GPU "
                + (f"{row['peak_gpu_mib']:,} MiB" if row.get("peak_gpu_mib") else "n/a")
                if "cache_build_s" in row
                else ""
            )
        )
        mfu = f"{100 * row['mfu']:.1f} %" if row.get("mfu") is not None else ""
        if mfu and row.get("mfu_at_full_width") is not None:
            mfu += f" ({100 * row['mfu_at_full_width']:.1f} % at full caption width; {row['peak_precision']} peak)"
        lines.append(
            f"| {row['part']} | {row['status']} | {figure} | {mfu} | {row.get('target', '')} | "
            f"{row.get('seconds', '')} |"
        )
    (out / "gpu_session.md").write_text("\n".join(lines) + "\n")


def session_parts(work: Path, smoke: bool) -> list:
    """(a part, its time limit) in the order they run: the telling rows first (eager throughput,
    notebooks, prediction), then compilation and the other precisions. --smoke keeps one row of
    each code path: on a CPU TF32 does not exist and the other compiled precisions add none."""
    parts = [
        (lambda limit: data_rows(work, smoke, limit), 240),
        (lambda limit: throughput_rows(work, smoke, "bf16", False, limit), 150),
        # Right after the eager row, under a limit of its own: last, it was left too little time to warm up.
        (lambda limit: throughput_rows(work, smoke, "bf16", True, limit), 180),
        (lambda limit: notebook_rows(work, smoke, limit), 240),
        (lambda limit: predict_rows(work, smoke, limit), 180),
    ]
    others = [("fp32", False)] if smoke else [("tf32", False), ("fp32", False), ("tf32", True), ("fp32", True)]
    parts += [(lambda limit, p=p, c=c: throughput_rows(work, smoke, p, c, limit), 240 if c else 90) for p, c in others]
    return [(part, min(limit, PART_LIMIT)) for part, limit in parts]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where the results go: gpu_session.json, .md and .log, nothing else")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/ct2-gpu-work"),
        help="where the data, caches and models go; emptied first, so that every session measures from nothing",
    )
    parser.add_argument("--smoke", action="store_true", help="the same code paths on a CPU, tiny shapes")
    parser.add_argument(
        "--budget",
        type=float,
        help="seconds for the whole session (default 450, leaving the device call's 600 s room for the "
        "machine's start and a margin; --smoke 900)",
    )
    parser.add_argument("--make-data", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--predict-cache", nargs="+", metavar="MODEL RESULT CACHE", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1024, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.predict_cache:
        model, result, *caches = args.predict_cache
        predict_cache(model, caches, result, args.batch)
        return 0
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.make_data:
        print(make_data(work, args.smoke))
        return 0
    # A second session on the same machine would find the first one's data, caches and study current
    # (the engine would run nothing) and time none of their making.
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    budget = args.budget or (900 if args.smoke else 450)
    started = time.perf_counter()
    rows = [environment()]
    write_tables(out, rows)
    for part, limit in session_parts(work, args.smoke):
        left = budget - (time.perf_counter() - started)
        if left < 20:
            rows.append({"part": "the parts after this", "status": f"skipped: the session's {budget:.0f} s were spent"})
            break
        try:
            rows += part(min(limit, left))
        except Exception as error:  # noqa: BLE001 (a broken part leaves a row and the session goes on)
            rows.append({"part": "a part of the session", "status": f"failed: {type(error).__name__}: {error}"})
        write_tables(out, rows)
        line = f"[{time.perf_counter() - started:5.0f} s] {rows[-1]['part']}: {rows[-1]['status']}"
        print(line, flush=True)
        with open(out / "gpu_session.log", "a") as log:
            log.write(line + "\n")
    write_tables(out, rows)
    print((out / "gpu_session.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
