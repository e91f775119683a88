"""What the prediction command (helpers.predict) returns, and the summary it prints of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Prediction:
    """What run returns: a row per input (the file it wrote) and what the summary says of them.
    metrics (and the file they went to) when the inputs carry labels."""

    frame: pd.DataFrame
    threshold: tuple[str, float]
    images_per_second: float
    warning: str = ""
    band: float = 0.0
    duplicates: list = field(default_factory=list)
    hidden_skipped: int = 0
    bad_rows: int = 0
    groups: str = ""
    metrics: dict | None = None
    metrics_path: str = ""


def summary(prediction: Prediction, out: str) -> str:
    frame = prediction.frame
    read, failed = int((frame["status"] == "ok").sum()), int((frame["status"] == "failed").sum())
    name, value = prediction.threshold
    lines = [prediction.warning] if prediction.warning else []
    missing = int(frame["caption_missing"].sum())
    if missing:
        lines.append(
            f"{missing} of {len(frame)} inputs have no caption: the dual encoder was trained on captioned "
            "images and reads these with an empty one, which it never saw; give their captions "
            "(--captions CSV, or a CSV of images with a caption column as --images)"
        )
    lines += [
        f"{len(frame)} inputs: {read} scored, {failed} failed; {missing} without caption",
        f"Task A threshold: {name} (AI at P(AI) >= {value:.6g})"
        + (
            f"; {int(frame['uncertain'].sum())} scores within {prediction.band:g} of it marked uncertain"
            if "uncertain" in frame
            else ""
        ),
        f"{prediction.images_per_second:.1f} images/s (decode + model)",
        f"predictions: {out}",
    ]
    if prediction.groups:
        lines.append(f"caption groups (uses the one-image-per-class structure): {prediction.groups}")
    if prediction.hidden_skipped:
        lines.append(f"skipped {prediction.hidden_skipped} hidden files or folders (names starting with '.')")
    if failed or prediction.bad_rows:
        lines.append(f"failures and unreadable labels (one reason each): {Path(out).with_suffix('.errors.csv')}")
        lines += [f"  {p}: {r}" for p, r in frame.loc[frame["status"] == "failed", ["path", "reason"]].head(5).values]
    duplicates = prediction.duplicates
    if duplicates:
        lines.append(
            f"{sum(len(g) for g in duplicates)} files are copies of one another ({len(duplicates)} groups), e.g. "
            + " = ".join(duplicates[0][:3])
        )
    scored = frame[frame["status"] == "ok"]
    if len(scored):
        lines.append("predicted: " + ", ".join(f"{k} {v}" for k, v in scored["generator"].value_counts().items()))
    metrics = prediction.metrics
    if metrics and "f1_a" in metrics:
        lines.append(
            f"labelled set ({metrics['rows_scored']} scored: {metrics['real_images']} real, {metrics['ai_images']} AI): "
            f"accuracy {100 * metrics['acc_a']:.1f}, precision {100 * metrics['precision_a']:.1f}, "
            f"recall {100 * metrics['recall_a']:.1f}, F1 {100 * metrics['f1_a']:.1f}, "
            f"false positives on real {100 * metrics['false_positive_rate_real']:.1f}%"
        )
        lines += [f"  recall {name}: {100 * v:.1f}%" for name, v in metrics["recall_per_generator"].items()]
        if "f1_b_weighted" in metrics:
            lines.append(
                f"  Task B: accuracy {100 * metrics['acc_b']:.1f}, weighted F1 {100 * metrics['f1_b_weighted']:.1f}"
            )
        lines.append(f"metrics: {prediction.metrics_path}")
    return "\n".join(lines)
