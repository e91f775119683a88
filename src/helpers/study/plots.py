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


def save(fig, folder: str | Path, name: str) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def keep(fig, cfg, name: str):
    """The figure saved as the report's figures/<name>.png and closed in pyplot, returned: a cell
    that ends with it shows it once (the inline backend would show an open one a second time)."""
    from helpers.study.setup import figures_dir

    save(fig, figures_dir(cfg), name)
    plt.close(fig)
    return fig


def confusion_matrices(matrix: np.ndarray, title: str):
    """Counts and row-normalised side by side, with the generator names."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    rows = matrix.sum(1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    for ax, values, fmt, label in ((axes[0], matrix, "d", "counts"), (axes[1], normalised, ".2f", "share of true class")):
        sns.heatmap(values, annot=True, fmt=fmt, cmap="Blues", xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES,
                    cbar=False, ax=ax)
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
    for column, label in (("eval_f1_a", "F1 Task A"), ("eval_f1_a_weighted", "weighted F1 Task A"),
                          ("eval_f1_b_weighted", "weighted F1 Task B")):
        if column in eval_metrics:
            axes[1].plot(eval_metrics["epoch"], eval_metrics[column], marker="o", label=label)
    axes[1].set(xlabel="epoch", ylabel="score", ylim=(0, 1.02), title=f"{title}: validation")
    axes[1].legend()
    fig.tight_layout()
    return fig


def class_balance(counts: pd.DataFrame):
    """counts: index = class names, one column per split."""
    fig, ax = plt.subplots(figsize=(9, 3.5))
    counts.plot.bar(ax=ax, rot=0)
    ax.set(ylabel="rows", title="rows per class and split")
    fig.tight_layout()
    return fig


def metadata_by_class(meta: pd.DataFrame):
    """Image width/height scatter, aspect ratio and file size per class."""
    named = meta.assign(cls=[CLASS_NAMES[b] if b >= 0 else "unlabelled" for b in meta["Label_B"]])
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    sns.scatterplot(data=named, x="width", y="height", hue="cls", ax=axes[0], s=14, alpha=0.6)
    sns.boxplot(data=named, x="cls", y="aspect", ax=axes[1])
    sns.boxplot(data=named, x="cls", y="file_bytes", ax=axes[2])
    axes[2].set_yscale("log")
    for ax in axes[1:]:
        ax.tick_params(axis="x", rotation=30)
    axes[0].set_title("image size")
    axes[1].set_title("aspect ratio (width / height)")
    axes[2].set_title("file size (bytes)")
    fig.tight_layout()
    return fig


def example_grid(images_by_class: dict[str, list], per_class: int = 4):
    fig, axes = plt.subplots(len(images_by_class), per_class, figsize=(2.2 * per_class, 2.2 * len(images_by_class)))
    for row, (name, images) in enumerate(images_by_class.items()):
        for col in range(per_class):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(images):
                ax.imshow(images[col])
                ax.set_title(f"{name} {images[col].size[0]}x{images[col].size[1]}", fontsize=8)
    fig.tight_layout()
    return fig


def spectra(spectra_by_class: dict[str, np.ndarray]):
    fig, axes = plt.subplots(1, len(spectra_by_class), figsize=(3 * len(spectra_by_class), 3.2))
    for ax, (name, spectrum) in zip(np.atleast_1d(axes), spectra_by_class.items()):
        ax.imshow(spectrum, cmap="magma")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle("mean log power spectrum of the preprocessed images (periodic traces show as bright dots)")
    fig.tight_layout()
    return fig


def confidence_histogram(confidence_a: np.ndarray, confidence_b: np.ndarray, threshold: float):
    fig, ax = plt.subplots(figsize=(8, 3.5))
    bins = np.linspace(0, 1, 41)
    ax.hist(confidence_a, bins=bins, alpha=0.6, label="Task A confidence")
    ax.hist(confidence_b, bins=bins, alpha=0.6, label="Task B confidence")
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold}")
    ax.set(xlabel="confidence", ylabel="rows", title="confidence on the unlabelled pool")
    ax.legend()
    fig.tight_layout()
    return fig


def per_generator_bars(table: pd.DataFrame, value: str, title: str):
    """table: one row per (class, model) with a numeric column `value`."""
    fig, ax = plt.subplots(figsize=(9, 3.5))
    sns.barplot(data=table, x="class", y=value, hue="model", ax=ax)
    ax.set(ylim=(0, 1.05), title=title)
    fig.tight_layout()
    return fig


def reliability_diagram(before: dict, after: dict, ece_before: float, ece_after: float):
    """before/after: calibration.reliability() tables."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for table, label in ((before, f"as trained (ECE {ece_before:.3f})"), (after, f"temperature-scaled (ECE {ece_after:.3f})")):
        used = table["count"] > 0
        ax.plot(table["confidence"][used], table["accuracy"][used], marker="o", label=label)
    ax.set(xlabel="mean predicted P(AI) in bin", ylabel="share of AI images in bin", title="reliability of head A",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def robustness_curves(per_class: pd.DataFrame, overall: pd.DataFrame, perturbation: str):
    """per_class: columns level, class, task_a_accuracy; overall: columns level, f1_a, f1_b_weighted."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, group in per_class.groupby("class", sort=False):
        ax.plot(group["level"].astype(str), group["task_a_accuracy"], marker="o", label=f"{name} (Task A acc.)")
    ax.plot(overall["level"].astype(str), overall["f1_a"], "k--", marker="s", label="F1 Task A")
    ax.plot(overall["level"].astype(str), overall["f1_b_weighted"], "k:", marker="^", label="weighted F1 Task B")
    ax.set(xlabel=perturbation.replace("_", " "), ylabel="score", ylim=(0, 1.02), title=f"robustness: {perturbation}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def unseen_bars(table: pd.DataFrame):
    """table: index = held-out generator, columns recall_held_out, recall_seen."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    positions = np.arange(len(table))
    ax.bar(positions - 0.2, table["recall_seen"], width=0.4, label="seen generators (mean)")
    ax.bar(positions + 0.2, table["recall_held_out"], width=0.4, label="the held-out generator")
    ax.set_xticks(positions, table.index)
    ax.set(ylim=(0, 1.05), ylabel="Task A recall", title="leave-one-generator-out")
    ax.legend()
    fig.tight_layout()
    return fig


def outside_bars(table: pd.DataFrame, title: str):
    """table: rows 'recall <generator>' and 'false_positive_rate_real' (percent), one column per view."""
    keep = [r for r in table.index if r.startswith("recall ") or r == "false_positive_rate_real"]
    long = (table.loc[keep].rename(index=lambda r: r.replace("recall ", "recall: ")
                                   .replace("false_positive_rate_real", "real called AI"))
            .reset_index(names="measure").melt(id_vars="measure", var_name="view", value_name="percent"))
    fig, ax = plt.subplots(figsize=(9, 3.8))
    sns.barplot(data=long, x="measure", y="percent", hue="view", ax=ax)
    ax.set(ylim=(0, 105), xlabel="", title=title)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def threshold_histogram(prob_ai: np.ndarray, label_a: np.ndarray, thresholds: dict):
    """P(AI) of real and AI images with each operating threshold drawn where it cuts."""
    fig, ax = plt.subplots(figsize=(9, 4))
    bins = np.linspace(0, 1, 41)
    ax.hist(prob_ai[label_a == 0], bins=bins, alpha=0.6, label="real")
    ax.hist(prob_ai[label_a == 1], bins=bins, alpha=0.6, label="AI")
    for (name, value), colour in zip(thresholds.items(), ("k", "tab:red", "tab:purple", "tab:green")):
        ax.axvline(value, color=colour, linestyle="--", label=f"{name} = {value:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("P(AI)")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.set_title("Where each operating threshold cuts")
    return fig
