"""Figures of the study; each returns its matplotlib Figure (notebooks show it, the report saves it)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg") if not matplotlib.get_backend().lower().startswith(("module://", "inline")) else None
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from helpers.labels import CLASS_NAMES
from study.setup import figures_dir


def save(fig, folder: str | Path, name: str) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def keep(fig, cfg, name: str):
    """The figure saved as the report's figures/<name>.png and closed in pyplot, returned: a cell
    that ends with it shows it once (the inline backend would show an open one a second time)."""
    save(fig, figures_dir(cfg), name)
    plt.close(fig)
    return fig


def confusion_matrices(matrix: np.ndarray, title: str):
    """Counts and row-normalised side by side, with the generator names."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    rows = matrix.sum(1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    for ax, values, fmt, label in (
        (axes[0], matrix, "d", "counts"),
        (axes[1], normalised, ".2f", "share of true class"),
    ):
        sns.heatmap(
            values,
            annot=True,
            fmt=fmt,
            cmap="Blues",
            xticklabels=CLASS_NAMES,
            yticklabels=CLASS_NAMES,
            cbar=False,
            ax=ax,
        )
        ax.set(xlabel="predicted", ylabel="true", title=f"{title} ({label})")
    fig.tight_layout()
    return fig


def learning_curves(train_loss: pd.DataFrame, eval_metrics: pd.DataFrame, title: str):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].plot(train_loss["epoch"], train_loss["loss"], marker=".", label="train loss")
    if "eval_loss" in eval_metrics:
        axes[0].plot(eval_metrics["epoch"], eval_metrics["eval_loss"], marker="o", label="validation loss")
    axes[0].set(xlabel="epoch", ylabel="loss", title=f"{title}: loss")
    axes[0].legend()
    for column, label in (
        ("eval_f1_a", "F1 Task A"),
        ("eval_f1_a_weighted", "weighted F1 Task A"),
        ("eval_f1_b_weighted", "weighted F1 Task B"),
    ):
        if column in eval_metrics:
            axes[1].plot(eval_metrics["epoch"], eval_metrics[column], marker="o", label=label)
    axes[1].set(xlabel="epoch", ylabel="score", ylim=(0, 1.02), title=f"{title}: validation")
    axes[1].legend()
    fig.tight_layout()
    return fig
