"""The report's index page: headline metrics, confusion matrices, links to every stage."""
from __future__ import annotations

import html
from pathlib import Path

from helpers.study import fidelity, records

HEADLINE = (("f1_a", "F1 A"), ("acc_a", "Acc A"), ("precision_a", "Prec A"), ("recall_a", "Rec A"),
            ("f1_b_weighted", "wF1 B"), ("acc_b", "Acc B"), ("precision_b_weighted", "wPrec B"),
            ("recall_b_weighted", "wRec B"), ("f1_b_macro", "mF1 B"), ("f1_b_weighted_argmax", "wF1 B argmax"),
            ("acc_b_argmax", "Acc B argmax"))
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.failed{color:#b00;font-weight:bold}
img{max-width:100%;border:1px solid #eee;margin:.3em 0}.muted{color:#666;font-size:.9em}"""


def _metrics_table(metrics: dict) -> str:
    rows = []
    for split, by_model in metrics.items():
        for model, values in by_model.items():
            cells = "".join(f"<td>{100 * values[k]:.2f}</td>" if k in values else "<td>–</td>" for k, _ in HEADLINE)
            rows.append(f"<tr><td>{html.escape(split)}</td><td>{html.escape(model)}</td>{cells}</tr>")
    head = "".join(f"<th>{label}</th>" for _, label in HEADLINE)
    return f"<table><tr><th>split</th><th>model</th>{head}</tr>{''.join(rows)}</table>"


def _pseudo_section(stats: dict) -> str:
    if not stats:
        return "<p>Pseudo-labelling was not run for this profile.</p>"
    rows = "".join(f"<tr><td>{html.escape(r['class'])}</td><td>{r['predicted']}</td><td>{r['kept']}</td>"
                   f"<td>{100 * r['kept_share']:.1f}%</td></tr>" for r in stats.get("per_class", []))
    return (f"<p>{stats['selected']} of {stats['pool']} unlabelled rows passed the threshold "
            f"{stats['threshold']} on both heads; {stats['to_train']} went to train and {stats['to_validation']} "
            f"to validation (split by {stats.get('split', 'captions').rstrip('s')}).{_overlap(stats)}</p><table><tr><th>predicted class</th><th>predicted</th><th>kept</th>"
            f"<th>kept share</th></tr>{rows}</table>")


def _overlap(stats: dict) -> str:
    """How many pool rows share a caption or an image with each split, and what the profile did."""
    overlap = stats.get("overlap") or {}
    shared = overlap.get("shared") or {}
    if not shared:
        return ""
    parts = ", ".join(f"{html.escape(name)}: {v['captions']} by caption, {v['images']} by image"
                      for name, v in shared.items())
    policy = ("left out (pool_overlap: drop)" if overlap.get("policy") == "drop"
              else "kept, as the authors' transductive setup does (pool_overlap: keep); images also in train are left out")
    return (f" Pool rows shared with another split — {parts}; those shared with a scored split were {policy}: "
            f"{overlap.get('left_out', 0)} rows left out in all.")


def _stages(record: dict) -> str:
    items = []
    for stage in record.get("stages", []):
        status = stage["status"]
        css = "" if status == "ok" else " class='failed'"
        error = f" — cell [{stage.get('cell')}]: {html.escape(stage.get('error', ''))}" if status != "ok" else ""
        if stage.get("last_output"):
            error += f"<pre>{html.escape(stage['last_output'])}</pre>"
        earlier = " <span class='muted'>(from an earlier run)</span>" if stage.get("from_earlier_run") else ""
        items.append(f"<li><a href='{stage['html']}'>{stage['notebook']}</a> (<a href='{stage['ipynb']}'>notebook</a>)"
                     f" <span{css}>{status}</span>, {stage['seconds']} s{earlier}{error}</li>")
    return f"<ol>{''.join(items)}</ol>"


def _outside(sets: dict) -> str:
    entries = {name: {"title": name, "html": item["html"], "conclusion": item["conclusion"], "figures": [item["figure"]]}
               for name, item in sets.items()}
    return _conclusions("Outside the training distribution", entries)


def _conclusions(heading: str, entries: dict) -> str:
    """A section of generated conclusions: per entry a title linking to its notebook, the
    paragraph, and its figures."""
    if not entries:
        return ""
    parts = [f"<h2>{html.escape(heading)}</h2>"]
    for name, item in entries.items():
        link = f" (<a href='{item['html']}'>details</a>)" if item.get("html") else ""
        parts.append(f"<h3>{html.escape(item.get('title', name))}{link}</h3><p>{html.escape(item['conclusion'])}</p>")
        for figure in item.get("figures", []):
            parts.append(f"<img src='{figure}' alt='{html.escape(name)}'>")
    return "".join(parts)


def write_index(out_dir: Path, record: dict) -> Path:
    out_dir = Path(out_dir)
    metrics = records.metrics(out_dir)
    scores = {k: metrics[k] for k in ("validation", "test") if k in metrics}
    # This run's figures only (notebook 04 records their names), never an earlier run's files.
    figures = [out_dir / "figures" / f"{name}.png" for name in metrics.get("figures", []) if name.startswith("cm_")]
    params = record.get("params", {})
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(params.get('profile', ''))} report</title>"
            f"<style>{STYLE}</style></head><body>",
            f"<h1>Multi-modal AI-generated image detection — profile <code>{html.escape(params.get('profile', ''))}</code></h1>",
            f"<p class='muted'>data {html.escape(str(params.get('dataset')))} · text {html.escape(str(params.get('text_encoder')))}"
            f" · vision {html.escape(str(params.get('vision_encoder')))} · device {html.escape(record.get('device', ''))}"
            f" · git {html.escape(record.get('git_sha', ''))} · {record.get('total_seconds', '?')} s in all"
            f" · <a href='provenance.json'>provenance</a> · <a href='metrics.json'>metrics.json</a></p>",
            "<h2>Stages</h2>", _stages(record)]
    if scores:
        page += ["<h2>Headline metrics (%)</h2>",
                 "<p class='muted'>Task A: AI vs real (F1 of the AI class). Task B: six classes, weighted over the true "
                 "classes' support; decoded as the profile's task_b_decoding says, and (argmax) as the plain argmax "
                 "over the six classes, as the authors' validation scores it. 'before' and 'after' are "
                 "the models trained without and with pseudo-labels.</p>", _metrics_table(scores)]
    if "pseudo" in metrics:
        page += ["<h2>Pseudo-labels</h2>", _pseudo_section(metrics["pseudo"])]
    if figures:
        page.append("<h2>Confusion matrices</h2>")
        page += [f"<h3>{html.escape(f.stem[3:].replace('_', ' '))}</h3><img src='figures/{f.name}'>" for f in figures]
    page.append(_outside(metrics.get("external", {})))
    page.append(_conclusions("How far to trust the numbers", metrics.get("analyses", {})))
    if params.get("profile") == "paper":
        page += ["<h2>Fidelity to the authors' code</h2>",
                 "<p class='muted'>Where the paper's text is loose, this profile follows the code that produced its "
                 "numbers.</p>", fidelity.html_table()]
    page.append("</body></html>")
    index = out_dir / "index.html"
    index.write_text("\n".join(page), encoding="utf-8")
    return index
