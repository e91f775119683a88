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

ROOT = Path(__file__).resolve().parents[1]
# (name, profile keys): the precisions measured, eager and compiled, the most telling first.
PRECISIONS = {"bf16": {"bf16": "true", "tf32": "true"}, "tf32": {"bf16": "false", "tf32": "true"},
              "fp32": {"bf16": "false", "tf32": "false"}}
PIPELINES = {"a_paper_style_workers0": "(a) paper-style pipeline", "b_ours_from_cache": "(b) ours, from the decode cache",
             "c_model_alone": "(c) model alone, tensors on the device"}
# What each row is held to on one H100-class GPU (docs/measurements.md).
TARGETS = {"b_ours_from_cache": ">= 7,500 samples/s, >= 40 % MFU, within 10 % of (c)", "notebooks": "<= 300 s after the cache",
           "predict_cache": ">= 10,000 images/s"}


def run_part(command: list[str], limit: float) -> tuple[str, float, str]:
    """(status, seconds, the end of its output) of one part run as a process under `limit` seconds."""
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit)
        status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as stopped:
        status, output = f"stopped at its limit of {limit:.0f} s", str(stopped.stdout or "") + str(stopped.stderr or "")
    return status, round(time.perf_counter() - started, 1), output[-1500:]


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
            used = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                                  capture_output=True, text=True).stdout.strip()
            if used:
                self.peak = max(self.peak or 0, int(float(used)))
            self._stop.wait(0.5)

    def __exit__(self, *exc):
        self._stop.set()


def environment() -> dict:
    import torch
    import transformers

    row = {"part": "environment", "status": "ok", "device": "cpu", "torch": torch.__version__,
           "transformers": transformers.__version__, "python": sys.version.split()[0],
           "disk_free_gib": round(shutil.disk_usage(ROOT).free / 2**30, 1)}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        row.update(device=torch.cuda.get_device_name(0), gpu_free_gib=round(free / 2**30, 1),
                   gpu_total_gib=round(total / 2**30, 1), cuda=torch.version.cuda)
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True).stdout.strip() if shutil.which("nvidia-smi") else ""
        row["driver"] = smi or None
    return row


def throughput_rows(out: Path, smoke: bool, precision: str, compiled: bool, limit: float) -> list[dict]:
    name = f"{precision}, {'compiled' if compiled else 'eager'}"
    result = out / f"throughput_{precision}_{'compiled' if compiled else 'eager'}.json"
    shape = (["--profile", "params/smoke.yaml", "--rows", "96", "--image-side", "32", "--steps", "2", "--warmup", "1"]
             if smoke else ["--profile", "params/gpu.yaml", "--rows", "1024", "--steps", "6", "--warmup", "2"])
    keys = [a for key, value in {**PRECISIONS[precision], "torch_compile": str(compiled).lower()}.items()
            for a in ("--set", f"{key}={value}")]
    status, seconds, output = run_part([sys.executable, "benchmarks/throughput.py", *shape, "--workers", "0", *keys,
                                        "--out", str(result)], limit)
    if status != "ok" or not result.is_file():
        return [{"part": f"training throughput, {name}", "status": status, "seconds": seconds, "output": output}]
    found = json.loads(result.read_text())
    return [{"part": f"training {PIPELINES[key]}, {name}", "status": "ok", "seconds": seconds,
             "samples_per_s": round(found[key], 1), "mfu": found.get(f"{key}_mfu"), "target": TARGETS.get(key, ""),
             "gflop_per_sample": round(found["model_gflop_per_sample"], 2)} for key in PIPELINES]


def notebook_rows(out: Path, smoke: bool, limit: float) -> list[dict]:
    """Notebooks 01-04 of the gpu profile on a reduced row count (smoke: of the smoke profile)."""
    profile = "params/smoke.yaml" if smoke else "params/gpu.yaml"
    reduced = [] if smoke else ["--set", "synthetic_captions={train: 1200, validation: 150, test: 150, unlabelled: 300}",
                                "--set", "epochs=2"]
    places = ["--set", f"work_dir={out / 'runs'}", "--set", f"report_dir={out / 'reports'}"]
    with PeakGpuMemory() as memory:
        status, seconds, output = run_part([sys.executable, "-m", "helpers.run", profile, "--only", "01", "02", "03", "04",
                                            *reduced, *places], limit)
    caches = [json.loads(m.read_text()) for m in (out / "runs" / "cache").glob("*/meta.json")]
    row = {"part": "notebooks 01-04" + (" (smoke profile)" if smoke else " (gpu profile, 10,800 rows, 2 epochs)"),
           "status": status, "seconds": seconds, "cache_build_s": round(sum(c.get("build_seconds", 0) for c in caches), 1),
           "peak_gpu_mib": memory.peak, "target": TARGETS["notebooks"]}
    provenance = next((out / "reports").glob("*/provenance.json"), None)
    if provenance:
        row["per_notebook_s"] = {s["notebook"][:2]: s["seconds"] for s in json.loads(provenance.read_text())["stages"]}
    if status != "ok":
        row["output"] = output
    return [row]


def predict_cache(model: str, cache: str, result: str, batch: int) -> None:
    """In its own process: images/s of the final model over a decode cache, as notebook 04 predicts."""
    from helpers.cache.store import open_cache
    from helpers.inference.cached import pick_device, predict
    from helpers.modeling.checkpoints import load_detector

    detector, _ = load_detector(model, pick_device())
    cached = open_cache(Path(cache))
    predict(detector, cached, batch, desc=None)  # warm-up: kernels, file cache
    started = time.perf_counter()
    predict(detector, cached, batch, desc=None)
    rate = len(cached) / (time.perf_counter() - started)
    Path(result).write_text(json.dumps({"images": len(cached), "images_per_s": round(rate, 1)}))


def predict_rows(out: Path, smoke: bool, limit: float) -> list[dict]:
    model = next((out / "runs").glob("*/model_after"), None)
    cache = max((out / "runs" / "cache").glob("test-*"), default=None, key=lambda p: p.stat().st_mtime)
    if model is None or cache is None:
        return [{"part": "prediction", "status": "skipped: the notebooks part saved no model or cache"}]
    result = out / "predict_cache.json"
    status, seconds, output = run_part([sys.executable, __file__, "--predict-cache", str(model), str(cache), str(result),
                                        "--batch", "64" if smoke else "1024"], limit)
    row = {"part": "prediction from the decode cache", "status": status, "seconds": seconds,
           "target": TARGETS["predict_cache"]}
    if status == "ok":
        row.update(json.loads(result.read_text()))
    rows = [row]
    files = ["--photos", "12", "--pngs", "4"] if smoke else ["--photos", "800", "--pngs", "200"]
    status, seconds, output = run_part([sys.executable, "benchmarks/predict_speed.py", "--model", str(model), *files,
                                        "--work", str(out / "predict-files"), "--out", str(out / "predict_files.json")],
                                       limit)
    row = {"part": "prediction from files (helpers.predict)", "status": status, "seconds": seconds}
    if status == "ok":
        found = json.loads((out / "predict_files.json").read_text())
        row.update(images=found["images"], images_per_s=round(found["workers_default"], 1),
                   share_of_decode_limit=round(found["share_of_decode_limit"], 2))
    return rows + [row]


def write_tables(out: Path, rows: list[dict]) -> None:
    (out / "gpu_session.json").write_text(json.dumps(rows, indent=2))
    device = next((r for r in rows if r["part"] == "environment"), {})
    lines = [f"Device: {device.get('device')} · torch {device.get('torch')} · transformers {device.get('transformers')}"
             f" · {time.strftime('%Y-%m-%d')}", "",
             "| part | status | figure | MFU | target | seconds |", "|---|---|---|---|---|---|"]
    for row in rows:
        figure = (f"{row['samples_per_s']:,} samples/s" if "samples_per_s" in row else
                  f"{row['images_per_s']:,.0f} images/s" if "images_per_s" in row else
                  ", ".join(f"{k} {v} s" for k, v in row.get("per_notebook_s", {}).items()) +
                  (f"; cache {row['cache_build_s']} s; peak GPU "
                   + (f"{row['peak_gpu_mib']:,} MiB" if row.get("peak_gpu_mib") else "n/a") if "cache_build_s" in row else ""))
        mfu = f"{100 * row['mfu']:.1f} %" if row.get("mfu") is not None else ""
        lines.append(f"| {row['part']} | {row['status']} | {figure} | {mfu} | {row.get('target', '')} | "
                     f"{row.get('seconds', '')} |")
    (out / "gpu_session.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="the same code paths on a CPU, tiny shapes")
    parser.add_argument("--budget", type=float, help="seconds for the whole session (default 480; --smoke 540)")
    parser.add_argument("--predict-cache", nargs=3, metavar=("MODEL", "CACHE", "RESULT"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1024, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.predict_cache:
        predict_cache(*args.predict_cache, args.batch)
        return 0
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    budget = args.budget or (540 if args.smoke else 480)
    started = time.perf_counter()
    # (a part, its time limit): in the order they run.
    parts = [(lambda limit, p=p, c=c: throughput_rows(out, args.smoke, p, c, limit), 150 if c else 75)
             for p, c in (("bf16", False), ("bf16", True), ("tf32", False), ("fp32", False))]
    parts += [(lambda limit: notebook_rows(out, args.smoke, limit), 240),
              (lambda limit: predict_rows(out, args.smoke, limit), 90)]
    parts += [(lambda limit, p=p: throughput_rows(out, args.smoke, p, True, limit), 150) for p in ("tf32", "fp32")]
    rows = [environment()]
    write_tables(out, rows)
    for part, limit in parts:
        left = budget - (time.perf_counter() - started)
        if left < 20:
            rows.append({"part": "the parts after this", "status": f"skipped: the session's {budget:.0f} s were spent"})
            break
        try:
            rows += part(min(limit, left))
        except Exception as error:  # noqa: BLE001 (a broken part leaves a row and the session goes on)
            rows.append({"part": "a part of the session", "status": f"failed: {type(error).__name__}: {error}"})
        write_tables(out, rows)
        print(f"[{time.perf_counter() - started:5.0f} s] {rows[-1]['part']}: {rows[-1]['status']}", flush=True)
    write_tables(out, rows)
    print((out / "gpu_session.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
