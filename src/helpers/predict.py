"""Score images with a trained detector.

python -m helpers.predict --model DIR --images PATH [--captions CSV] --out preds.csv [--json answer.json] [--workers N]
                          [--threshold 0.5|fpr1|fpr5|f1|NUMBER] [--uncertain-band 0.1] [--caption-groups]

PATH is a folder of images (searched recursively; hidden files and folders are skipped and
counted; symbolic links are followed once), a CSV with an image column (paths relative to the
CSV; optional caption, label_a and generator columns), or a data set the study's loader reads
(a saved or parquet folder, or a hub id; --split picks the split). A folder with real/ and
ai/[<generator>/] subfolders, a CSV with label_a, or a data set with labels is a labelled set:
the command then also writes <out>.metrics.json (Task A, the false-positive rate on real images,
recall per generator, Task B when the labels name CT2 classes) and prints it.

Every input gets one output row with a status; unreadable files and rows whose label cannot be
read get a one-line reason, also written to <out>.errors.csv. Files with the same bytes are
reported. A missing caption is allowed (empty text) and counted. The competition JSON has one
entry per input: an unreadable image is scored there on the all-zero input, as the authors'
code does, and stays marked failed in the CSV. Images are decoded in --workers processes
(default: one per core), streaming.

--caption-groups (or --set task_b_decoding=caption_groups) decodes the images of a caption together when there are exactly six of them (one
per class, as in CT2: inference/caption_groups.py); other groups keep the per-image answer. The
column `decoding` says which each row got. It relies on the set's structure: do not use it on
images in the wild.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.config import ConfigError, load_config
from helpers.data.inputs import Inputs, read_inputs
from helpers.data.schema import read_image_table
from helpers.evaluation import outside as external
from helpers.evaluation.metrics import write_competition_json
from helpers.evaluation.thresholds import resolve
from helpers.inference import streaming as scoring
from helpers.inference.cached import pick_device
from helpers.inference.caption_groups import decode_scored
from helpers.labels import CLASS_NAMES
from helpers.modeling.checkpoints import load_detector
from helpers.overrides import parse_overrides
from helpers.prediction import Prediction, summary


class LabelSetError(ValueError):
    """The model was trained with another label set than the one this command writes."""


def check_label_set(class_names: list[str]) -> None:
    if list(class_names) != list(CLASS_NAMES):
        raise LabelSetError(
            f"the model's classes {list(class_names)} differ from CT2's {list(CLASS_NAMES)}; "
            "its Label_B numbers would be read wrongly, so this command refuses it"
        )


def _captions_by_path(csv: Path) -> dict[str, str]:
    frame, image, caption = read_image_table(csv)
    if caption is None:
        raise ValueError(f"{csv} needs a caption column beside the image column; it has {list(frame.columns)}")
    return dict(zip(frame[image], frame[caption]))


# Profile keys that mean something when scoring with a trained model; the rest are fixed by training.
PREDICTION_KEYS = {"eval_batch_size", "bf16", "task_b_decoding", "caption_template"}


def prediction_settings(items: list[str] | None) -> dict:
    """--set values for prediction, typed and checked like a profile's; keys that training fixed
    (the encoders, the image size, ...) are refused by name."""
    overrides = parse_overrides(items)
    fixed = sorted(set(overrides) - PREDICTION_KEYS)
    if fixed:
        raise ConfigError(
            f"--set {', '.join(fixed)}: does not apply to prediction (the trained model fixes it); "
            f"keys that do: {sorted(PREDICTION_KEYS)}"
        )
    checked = load_config({"profile": "predict"}, overrides)
    return {key: getattr(checked, key) for key in overrides}


def _frame(inputs: Inputs, scored) -> pd.DataFrame:
    preds = scored.predictions
    frame = pd.DataFrame(
        {
            "index": np.arange(len(inputs)),
            "path": inputs.names,
            "status": np.where(scored.ok, "ok", "failed"),
            "reason": scored.reason,
            "caption_missing": [not c for c in inputs.captions],
        }
    )
    frame["p_ai"] = np.where(scored.ok, preds.prob_ai, np.nan)
    frame["Label_A"] = np.where(scored.ok, preds.label_a, -1)
    frame["Label_B"] = np.where(scored.ok, preds.label_b, -1)
    frame["generator"] = [CLASS_NAMES[b] if ok else "" for b, ok in zip(preds.label_b, scored.ok)]
    for cls, name in enumerate(CLASS_NAMES):
        frame[f"p_{name}"] = np.where(scored.ok, preds.probs_b[:, cls], np.nan)
    if inputs.labelled:
        frame["true_Label_A"], frame["true_generator"] = inputs.label_a, inputs.generator
    return frame


def trained_on(model_dir: str) -> tuple[str, str]:
    """(the data set a saved model was trained on, a warning when that was the embedded synthetic
    set, whose answers mean nothing on real-world images)."""
    meta = Path(model_dir) / "training_meta.json"
    dataset = json.loads(meta.read_text()).get("params", {}).get("dataset", "unknown") if meta.is_file() else "unknown"
    if dataset != "synthetic":
        return dataset, ""
    return dataset, (
        "WARNING: this model was trained on the embedded synthetic demo set (helpers/data/synthetic.py), "
        "not on real photos or real generators: its answers on real-world images mean nothing. Train the "
        "paper profile (or your own data) before trusting it."
    )


def run(
    model_dir: str,
    images: str,
    out: str,
    captions: str | None = None,
    json_out: str | None = None,
    split: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    settings: dict | None = None,
    workers: int | None = None,
    threshold: str = "0.5",
    uncertain_band: float = 0.0,
    caption_groups: bool = False,
) -> Prediction:
    settings = settings or {}
    model, tokenizer = load_detector(model_dir, pick_device(device))
    check_label_set(model.config.class_names)
    threshold_name, threshold_value = resolve(threshold, getattr(model.config, "operating_thresholds", None))
    dataset, warning = trained_on(model_dir)
    model.config.task_b_decoding = settings.get("task_b_decoding", model.config.task_b_decoding)
    model.config.inference_caption_template = settings.get("caption_template", model.config.inference_caption_template)
    inputs = read_inputs(images, split)
    if captions:
        lookup = _captions_by_path(Path(captions))
        inputs.captions = [
            c or lookup.get(str(Path(cell).resolve()) if isinstance(cell, str) else "", "")
            for c, cell in zip(inputs.captions, inputs.chunk(0, len(inputs)))
        ]
    started = time.perf_counter()
    scored = scoring.score(
        model,
        tokenizer,
        inputs,
        settings.get("eval_batch_size", batch_size),
        workers,
        bf16=settings.get("bf16"),
        threshold=threshold_value,
    )
    seconds = time.perf_counter() - started
    report = None
    if caption_groups or model.config.task_b_decoding == "caption_groups":
        if not any(inputs.captions):
            raise ValueError("--caption-groups needs captions: give --captions CSV or inputs with a caption column")
        scored, decoding, report = decode_scored(scored, inputs.captions, model.config.task_b_decoding, threshold_value)
    frame = _frame(inputs, scored)
    if report is not None:
        frame["decoding"] = decoding
    frame["threshold"] = f"{threshold_name} ({threshold_value:.6g})"
    if uncertain_band:
        frame["uncertain"] = np.where(scored.ok, np.abs(frame["p_ai"] - threshold_value) < uncertain_band, False)
    frame["model_trained_on"] = dataset
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_path, index=False)
    errors = pd.concat(
        [frame.loc[~scored.ok, ["index", "path", "reason"]], inputs.bad_rows.rename(columns={"input": "path"})],
        ignore_index=True,
    )
    errors.sort_values("index", kind="stable").to_csv(out_path.with_suffix(".errors.csv"), index=False)
    if json_out:
        write_competition_json(json_out, scored.predictions.label_a, scored.predictions.label_b)
    prediction = Prediction(
        frame=frame,
        threshold=(threshold_name, threshold_value),
        images_per_second=len(inputs) / seconds if seconds else float("nan"),
        warning=warning,
        band=uncertain_band,
        duplicates=[[inputs.names[r] for r in group] for group in scored.duplicates()],
        hidden_skipped=inputs.hidden_skipped,
        bad_rows=len(inputs.bad_rows),
        groups=report.summary() if report else "",
    )
    if inputs.labelled:
        prediction.metrics = {
            **external.outside_metrics(inputs, scored),
            "threshold": threshold_name,
            "threshold_value": threshold_value,
            **({"warning": warning} if warning else {}),
        }
        metrics_path = out_path.with_suffix(".metrics.json")
        metrics_path.write_text(json.dumps(prediction.metrics, indent=2))
        prediction.metrics_path = str(metrics_path)
    return prediction


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score images with a trained CT2 detector.")
    parser.add_argument("--model", required=True, help="a saved detector folder (e.g. runs/demo/model_after)")
    parser.add_argument("--images", required=True, help="a folder, a CSV with an image column, or a data set")
    parser.add_argument("--captions", help="CSV with columns image, caption (paths relative to the CSV)")
    parser.add_argument("--out", required=True, help="the predictions CSV to write")
    parser.add_argument("--json", help="also write the competition JSON (index, Label_A, Label_B)")
    parser.add_argument("--split", help="the split to score when --images is a data set")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--workers", type=int, help="decode processes (default: one per core; 0 = decode in this process)"
    )
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--threshold",
        default="0.5",
        help="Task A's threshold: 0.5, fpr1 / fpr5 (1 %% / 5 %% of the validation's real images called "
        "AI), f1 (F1-maximising on validation), or a number",
    )
    parser.add_argument(
        "--uncertain-band",
        type=float,
        default=0.0,
        help="mark rows whose P(AI) lies within this distance of the threshold as uncertain",
    )
    parser.add_argument(
        "--caption-groups",
        action="store_true",
        help="decode the six images of a caption together, one per class (CT2's structure; needs captions)",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help=f"a profile key that applies to prediction: {', '.join(sorted(PREDICTION_KEYS))}",
    )
    args = parser.parse_args(argv)
    try:
        settings = prediction_settings(args.set)
        prediction = run(
            args.model,
            args.images,
            args.out,
            args.captions,
            args.json,
            args.split,
            args.batch_size,
            args.device,
            settings,
            args.workers,
            args.threshold,
            args.uncertain_band,
            args.caption_groups,
        )
    except (LabelSetError, FileNotFoundError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary(prediction, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
