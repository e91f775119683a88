"""Run the notebook study for one profile: python -m helpers.run params/<profile>.yaml

Executes notebooks/NN_*.ipynb in order with papermill (kernel python3, the profile passed
whole as parameters, an execution timeout), into reports/<profile>/: each executed
notebook, its HTML reading copy (code hidden), provenance.json, and index.html. A failing
notebook stops the run with the failing cell's error; what ran is kept and indexed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .config import ConfigError, load_config
from .provenance import provenance
from .report import write_index

KERNEL = "python3"


def notebooks(folder: Path, only: list[str] | None = None) -> list[Path]:
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [nb for nb in found if any(nb.stem.startswith(o) for o in only)]
    if not found:
        raise FileNotFoundError(f"no notebooks to run in {folder}" + (f" matching {only}" if only else ""))
    return found


def render_html(notebook: Path) -> Path:
    """The reading copy: code and stderr (progress bars, warnings) left out; the executed
    notebook beside it keeps everything."""
    import nbformat
    from nbconvert import HTMLExporter

    node = nbformat.read(notebook, as_version=4)
    for cell in node.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if o.get("name") != "stderr"]
    body, _ = HTMLExporter(exclude_input=True).from_notebook_node(node)
    out = notebook.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def run_notebook(notebook: Path, out_dir: Path, parameters: dict, timeout: int, root: Path) -> dict:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = out_dir / notebook.name
    started = time.perf_counter()
    stage = {"notebook": notebook.stem, "ipynb": output.name, "html": output.with_suffix(".html").name}
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=KERNEL,
                                   execution_timeout=timeout, cwd=str(root), progress_bar=True)
        stage["status"] = "ok"
    except PapermillExecutionError as error:
        stage.update(status="failed", error=f"{error.ename}: {error.evalue}", cell=error.exec_count)
    stage["seconds"] = round(time.perf_counter() - started, 1)
    if output.is_file():
        render_html(output)
    return stage


def run_study(profile_path: str | Path, only: list[str] | None = None, root: Path | None = None) -> dict:
    root = (root or Path.cwd()).resolve()
    cfg = load_config(profile_path)
    out_dir = root / cfg.reports
    out_dir.mkdir(parents=True, exist_ok=True)
    if not only:  # a full run starts a fresh metrics file; a partial one updates what is there
        (out_dir / "metrics.json").unlink(missing_ok=True)
    record = {**provenance(cfg), "profile_file": str(profile_path), "stages": []}
    started = time.perf_counter()
    for notebook in notebooks(root / "notebooks", only):
        print(f"[{cfg.profile}] running {notebook.name} ...", flush=True)
        stage = run_notebook(notebook, out_dir, cfg.to_dict(), cfg.notebook_timeout, root)
        record["stages"].append(stage)
        print(f"[{cfg.profile}] {notebook.name}: {stage['status']} in {stage['seconds']} s", flush=True)
        if stage["status"] != "ok":
            break
    record["total_seconds"] = round(time.perf_counter() - started, 1)
    (out_dir / "provenance.json").write_text(json.dumps(record, indent=2, default=str))
    index = write_index(out_dir, record)
    record["index"] = str(index)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", help="a profile YAML, e.g. params/demo.yaml")
    parser.add_argument("--only", nargs="*", help="run only notebooks whose names start with these (e.g. 01 04)")
    args = parser.parse_args(argv)
    try:
        record = run_study(args.profile, args.only)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = [s for s in record["stages"] if s["status"] != "ok"]
    if failed:
        stage = failed[0]
        print(f"error: {stage['notebook']} failed at cell [{stage['cell']}]: {stage['error']}\n"
              f"  executed notebook with the traceback: {Path(record['index']).parent / stage['ipynb']}", file=sys.stderr)
        return 1
    print(f"report: {record['index']}  ({record['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
