"""The report of one run of the study, from the records its rules wrote: metrics.json (every record
merged), provenance.json (parameters, git SHA, versions, data revisions, seed, device, each stage's
time) and the index page (templates/index.html.j2, Jinja2, every value escaped): stages, headline
metrics, pseudo-labels and the pool's overlap, confusion matrices, the analyses' and outside sets'
conclusions, and the fidelity table for the paper profile. Only the records handed in are read: a
stage that is not in this run's graph is not on the page."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from markupsafe import Markup

from study.records import merge

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

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


def title(notebook: Path) -> str:
    """A notebook's title: its first heading, without the number ('# 5 · Shortcut audit')."""
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            return cell.source.splitlines()[0][2:].split("·", 1)[-1].strip()
    return Path(notebook).stem


def stage(executed: Path) -> dict:
    """A stage of the run as the index lists it, from its executed notebook."""
    executed = Path(executed)
    node = nbformat.read(executed, as_version=4)
    run = node.metadata.get("papermill", {})
    return {
        "notebook": executed.stem,
        "title": title(executed),
        "html": f"{executed.stem}.html",
        "ipynb": executed.name,
        "seconds": round(run["duration"], 1) if run.get("duration") is not None else None,
        "started": run.get("start_time"),
        "ended": run.get("end_time"),
    }


def span(stages: list[dict]) -> dict:
    """From the first stage's start to the last one's end (stages side by side overlap), in seconds."""
    from datetime import datetime

    times = [(datetime.fromisoformat(s["started"]), datetime.fromisoformat(s["ended"])) for s in stages if s["ended"]]
    if not times:
        return {}
    return {"total_seconds": round((max(e for _, e in times) - min(b for b, _ in times)).total_seconds(), 1)}


def merged(records: list[Path], stages: dict[str, dict]) -> dict:
    """metrics.json: every record merged, one level deep (analyses, external: an entry per writer),
    each analysis and outside set titled by and linked to the notebook that wrote it. stages: by
    record name (records/<name>.json), the stage that wrote it; an analysis's record is its name."""
    metrics: dict = {}
    for path in map(Path, records):
        merge(metrics, json.loads(path.read_text()))
    for name, item in (metrics.get("analyses") or {}).items():
        item.update(title=stages[name]["title"], html=stages[name]["html"])
    for item in (metrics.get("external") or {}).values():
        item.update(html=stages["external"]["html"])
    return metrics


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


def write_index(out_dir: Path, record: dict, metrics: dict) -> Path:
    """index.html in out_dir: record as provenance.json holds it, metrics as metrics.json."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    out_dir = Path(out_dir)
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
        has_metrics=bool(metrics),
    )
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
