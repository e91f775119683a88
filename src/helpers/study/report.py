"""The report's index page (templates/index.html.j2, Jinja2, every value escaped): stages, headline
metrics, pseudo-labels and the pool's overlap, this run's confusion matrices, the analyses' and
outside sets' conclusions, and the fidelity table for the paper profile."""

from __future__ import annotations

import os
from pathlib import Path

from markupsafe import Markup

from helpers.study import records

TEMPLATES = Path(__file__).parent / "templates"

HEADLINE = (
    ("f1_a", "F1 A"),
    ("acc_a", "Acc A"),
    ("precision_a", "Prec A"),
    ("recall_a", "Rec A"),
    ("f1_b_weighted", "wF1 B"),
    ("acc_b", "Acc B"),
    ("precision_b_weighted", "wPrec B"),
    ("recall_b_weighted", "wRec B"),
    ("f1_b_macro", "mF1 B"),
    ("f1_b_weighted_argmax", "wF1 B argmax"),
    ("acc_b_argmax", "Acc B argmax"),
)


# The study's paper and the published methods notebook 12 compares it with: (what, citation, link).
PAPER = (
    "Guo & Zubiaga, NAU-QMUL: Utilizing BERT and CLIP for Multi-modal AI-Generated Image Detection, "
    "De-Factify 4 (2025)",
    "https://arxiv.org/abs/2602.23863",
)
AUTHORS_CODE = "https://github.com/xxxxxxxxy/AIGeneratedImageDetection"
BASELINE_SOURCES = (
    (
        "image-only fine-tuning with both heads",
        "Moskowitz, Gaona & Peterson, Detecting AI-Generated Images via CLIP (2024)",
        "https://arxiv.org/abs/2404.08788",
    ),
    (
        "frozen features + logistic regression",
        "Ojha, Li & Lee, Towards Universal Fake Image Detectors that Generalize "
        "Across Generative Models (UnivFD, CVPR 2023)",
        "https://arxiv.org/abs/2302.10174",
    ),
    (
        "frozen features + linear SVM on a few pairs",
        "Cozzolino, Poggi, Corvi, Nießner & Verdoliva, Raising the Bar of "
        "AI-generated Image Detection with CLIP (CVPRW 2024)",
        "https://arxiv.org/abs/2312.00195",
    ),
)


def _outside(sets: dict) -> dict:
    return {
        name: {"title": name, "html": item["html"], "conclusion": item["conclusion"], "figures": [item["figure"]]}
        for name, item in sets.items()
    }


def _with_table(item: dict) -> dict:
    """An analysis entry with its summary table (numbers['table']: row -> column -> cell) as HTML."""
    import pandas as pd

    table = (item.get("numbers") or {}).get("table")
    return {**item, "table": Markup(pd.DataFrame(table).T.to_html()) if table else ""}


def fidelity_table() -> Markup:
    """The fidelity table (templates/fidelity.md; docs/fidelity.md shows the same) as HTML; the index
    template calls it on the paper profile's page only."""
    import mistune

    return Markup(
        mistune.create_markdown(escape=True, plugins=["table"])((TEMPLATES / "fidelity.md").read_text("utf-8"))
    )


def write_index(out_dir: Path, record: dict) -> Path:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    out_dir = Path(out_dir)
    metrics = records.metrics(out_dir)
    analyses = metrics.get("analyses", {})
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["j2"]), trim_blocks=True, lstrip_blocks=True
    )
    page = environment.get_template("index.html.j2").render(
        record=record,
        params=record.get("params", {}),
        revisions=record.get("data_revisions", {}),
        metrics=metrics,
        scores={k: metrics[k] for k in ("validation", "test") if k in metrics},
        headline=HEADLINE,
        pseudo=metrics.get("pseudo"),
        overlap=(metrics.get("pseudo") or {}).get("overlap") or {},
        # This run's figures only (notebook 04 records their names), never an earlier run's files.
        figures=[name for name in metrics.get("figures", []) if name.startswith("cm_")],
        sections=[
            ("Baselines", {k: v for k, v in analyses.items() if k == "baselines"}),
            ("Beyond the paper", {k: _with_table(v) for k, v in analyses.items() if k == "beyond"}),
            ("Outside the training distribution", _outside(metrics.get("external", {}))),
            ("How far to trust the numbers", {k: v for k, v in analyses.items() if k not in ("baselines", "beyond")}),
        ],
        fidelity_table=fidelity_table,
        paper=PAPER,
        authors_code=AUTHORS_CODE,
        baseline_sources=BASELINE_SOURCES,
        has_metrics=(out_dir / "metrics.json").is_file(),
        last_complete=os.path.relpath(record["last_complete_report"], out_dir)
        if record.get("last_complete_report")
        else "",
    )
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
