"""Score images with a trained detector.

python -m helpers.predict --model DIR --images PATH [--captions CSV] --out preds.csv [--json answer.json]

PATH is a folder of images (searched recursively; every non-hidden file counts as an input),
a CSV with an image column (paths relative to the CSV; optional caption column), or a data
set the study's loader reads (a saved or parquet folder, or a hub id; --split picks the split). Every input
gets one output row with a status; unreadable files get a one-line reason, also written to
<out>.errors.csv. A missing caption is allowed (empty text) and counted. The competition JSON
has one entry per input: an unreadable image is scored there on the all-zero input, as the
authors' code does, and stays marked failed in the CSV.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from .cache import CachedSplit, blank_rows, build_cache
from .data import FEATURES, find_column, load_source
from .imageio import list_files
from .inference import pick_device, predict
from .labels import CLASS_NAMES
from .metrics import write_competition_json
from .model import load_detector


class LabelSetError(ValueError):
    """The model was trained with another label set than the one this command writes."""


def check_label_set(class_names: list[str]) -> None:
    if list(class_names) != list(CLASS_NAMES):
        raise LabelSetError(f"the model's classes {list(class_names)} differ from CT2's {list(CLASS_NAMES)}; "
                            "its Label_B numbers would be read wrongly, so this command refuses it")


def _captions_by_path(csv: Path) -> dict[str, str]:
    frame = pd.read_csv(csv, keep_default_na=False)
    image, caption = find_column(frame.columns, "Image"), find_column(frame.columns, "Caption")
    if image is None or caption is None:
        raise ValueError(f"{csv} needs an image and a caption column; it has {list(frame.columns)}")
    return {str((csv.parent / p).resolve()): c for p, c in zip(frame[image], frame[caption])}


def inputs_from(path: Path, split: str | None) -> tuple[datasets.Dataset, list[str]]:
    """The inputs as a data set of the study's schema, and a display name for each."""
    saved = path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file()
                               or any(path.rglob("*.parquet")))
    if path.is_dir() and not saved:
        files = list_files(path)
        if not files:
            raise FileNotFoundError(f"no files under {path}")
        names = [str(f.resolve()) for f in files]
        rows = {"Caption": [""] * len(names), "Image": [{"bytes": None, "path": n} for n in names],
                "Label_A": [-1] * len(names), "Label_B": [-1] * len(names)}
        return datasets.Dataset.from_dict(rows, features=FEATURES), names
    source = load_source(str(path))
    name = split or ("test" if "test" in source else next(iter(source)))
    if name not in source:
        raise KeyError(f"split '{name}' is not in {path} (splits: {list(source)})")
    chosen = source[name]
    names = [cell.get("path") or f"{name}[{i}]" for i, cell in enumerate(chosen["Image"])]
    return chosen, names


# Profile keys that mean something when scoring with a trained model; the rest are fixed by training.
PREDICTION_KEYS = {"eval_batch_size", "bf16", "task_b_decoding", "caption_template"}


def prediction_settings(items: list[str] | None) -> dict:
    """--set values for prediction, typed and checked like a profile's; keys that training fixed
    (the encoders, the image size, ...) are refused by name."""
    from .config import ConfigError, load_config, parse_overrides

    overrides = parse_overrides(items)
    fixed = sorted(set(overrides) - PREDICTION_KEYS)
    if fixed:
        raise ConfigError(f"--set {', '.join(fixed)}: does not apply to prediction (the trained model fixes it); "
                          f"keys that do: {sorted(PREDICTION_KEYS)}")
    checked = load_config({"profile": "predict"}, overrides)
    return {key: getattr(checked, key) for key in overrides}


def run(model_dir: str, images: str, out: str, captions: str | None = None, json_out: str | None = None,
        split: str | None = None, batch_size: int = 64, device: str = "auto", settings: dict | None = None) -> pd.DataFrame:
    settings = settings or {}
    model, tokenizer = load_detector(model_dir, pick_device(device))
    check_label_set(model.config.class_names)
    batch_size = settings.get("eval_batch_size", batch_size)
    model.config.task_b_decoding = settings.get("task_b_decoding", model.config.task_b_decoding)
    model.config.inference_caption_template = settings.get("caption_template", model.config.inference_caption_template)
    bf16 = settings.get("bf16", True)
    inputs, names = inputs_from(Path(images), split)
    if captions:
        lookup = _captions_by_path(Path(captions))
        inputs = inputs.map(lambda row: {"Caption": row["Caption"] or lookup.get(row["Image"]["path"] or "", "")})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="predict-cache-") as cache_dir:
        template = model.config.inference_caption_template
        cached = build_cache(inputs, "predict", cache_dir, model.config.image_size, tokenizer,
                             model.config.max_caption_length, caption_template=template)
        preds = predict(model, cached, batch_size, bf16=bf16)
        failures = cached.failures
        if json_out:
            blanks = blank_rows(inputs, failures["row"].to_numpy(), model.config.image_size, tokenizer,
                                model.config.max_caption_length, template)
            everything = CachedSplit.concat([cached, blanks])
            answers = predict(model, everything, batch_size, bf16=bf16, desc=None)
            order = np.argsort(everything.rows, kind="stable")
            write_competition_json(json_out, answers.label_a[order], answers.label_b[order], everything.rows[order])
    seconds = time.perf_counter() - started
    frame = pd.DataFrame({"index": np.arange(len(names)), "path": names, "status": "failed", "reason": "",
                          "caption_missing": [not c for c in inputs["Caption"]]})
    frame.loc[failures["row"].to_numpy(), "reason"] = failures["reason"].to_numpy()
    ok = cached.rows
    frame.loc[ok, "status"] = "ok"
    frame["p_ai"], frame["Label_A"], frame["Label_B"], frame["generator"] = np.nan, -1, -1, ""
    frame.loc[ok, "p_ai"] = preds.prob_ai
    frame.loc[ok, "Label_A"] = preds.label_a
    frame.loc[ok, "Label_B"] = preds.label_b
    frame.loc[ok, "generator"] = [CLASS_NAMES[b] for b in preds.label_b]
    for cls, name in enumerate(CLASS_NAMES):
        frame[f"p_{name}"] = np.nan
        frame.loc[ok, f"p_{name}"] = preds.probs_b[:, cls]
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_path, index=False)
    frame.loc[frame["status"] == "failed", ["path", "reason"]].to_csv(out_path.with_suffix(".errors.csv"), index=False)
    frame.attrs.update(seconds=seconds, images_per_second=len(ok) / seconds if seconds else float("nan"))
    return frame


def summary(frame: pd.DataFrame, out: str) -> str:
    read, failed = int((frame["status"] == "ok").sum()), int((frame["status"] == "failed").sum())
    lines = [f"{len(frame)} inputs: {read} scored, {failed} failed; {int(frame['caption_missing'].sum())} without caption",
             f"{frame.attrs['images_per_second']:.1f} images/s (decode + model)", f"predictions: {out}"]
    if failed:
        lines.append(f"failures (one reason each): {Path(out).with_suffix('.errors.csv')}")
        lines += [f"  {p}: {r}" for p, r in frame.loc[frame['status'] == 'failed', ['path', 'reason']].head(5).values]
    scored = frame[frame["status"] == "ok"]
    if len(scored):
        lines.append("predicted: " + ", ".join(f"{k} {v}" for k, v in scored["generator"].value_counts().items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score images with a trained CT2 detector.")
    parser.add_argument("--model", required=True, help="a saved detector folder (e.g. runs/demo/model_after)")
    parser.add_argument("--images", required=True, help="a folder, a CSV with an image column, or a data set")
    parser.add_argument("--captions", help="CSV with columns image, caption (paths relative to the CSV)")
    parser.add_argument("--out", required=True, help="the predictions CSV to write")
    parser.add_argument("--json", help="also write the competition JSON (index, Label_A, Label_B)")
    parser.add_argument("--split", help="the split to score when --images is a data set")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda, cuda:1 ...")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help=f"a profile key that applies to prediction: {', '.join(sorted(PREDICTION_KEYS))}")
    args = parser.parse_args(argv)
    try:
        settings = prediction_settings(args.set)
        frame = run(args.model, args.images, args.out, args.captions, args.json, args.split, args.batch_size, args.device,
                    settings)
    except (LabelSetError, FileNotFoundError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary(frame, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
