"""Run the notebook study for one profile: python -m helpers.run params/<profile>.yaml

Executes notebooks/NN_*.ipynb in order with papermill (the project's kernel, ct2-detector,
registered for this Python when missing; an execution timeout;
the parameters are the profile file and the overrides given with --set), into
reports/<profile>/: each executed notebook, its HTML reading copy (code hidden),
provenance.json, and index.html. A failing notebook stops the run with the failing cell's
error; what ran is kept and indexed.

--resume restarts at the first notebook that did not finish, keeping the ones that finished
with the same resolved parameters (their hash is in provenance.json), and lets the training
stages continue from their checkpoints (resume: auto). If a parameter that decides results
changed, the study runs again from the start, fresh.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .config import ConfigError, changed_keys, identity, identity_hash, load_config, parse_overrides
from .provenance import provenance
from .report import write_index

KERNEL = "ct2-detector"
KERNEL_DISPLAY = "CT2 detector"


def ensure_kernel() -> str:
    """The project's named kernel, registered for this Python (its environment prefix) if it is
    not there, so that the study never runs in another environment's `python3` kernel."""
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL not in KernelSpecManager().find_kernel_specs():
        from ipykernel.kernelspec import install

        install(kernel_name=KERNEL, display_name=KERNEL_DISPLAY, prefix=sys.prefix)
    return KERNEL


def _ipc_kernel_manager():
    """Kernels talk to papermill over local IPC sockets, not TCP: nothing is sent over the network
    in plain text, and the kernel has no transport warning to print."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self):
            return "ipc"

    return IPCKernelManager


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
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=ensure_kernel(),
                                   execution_timeout=timeout, cwd=str(root), progress_bar=True,
                                   kernel_manager_class=_ipc_kernel_manager())
        stage["status"] = "ok"
    except PapermillExecutionError as error:
        stage.update(status="failed", error=f"{error.ename}: {error.evalue}", cell=error.exec_count)
    stage["seconds"] = round(time.perf_counter() - started, 1)
    if output.is_file():
        render_html(output)
    return stage


def run_study(profile_path: str | Path, only: list[str] | None = None, root: Path | None = None,
              overrides: dict | None = None, resume: bool = False) -> dict:
    root = (root or Path.cwd()).resolve()
    overrides = dict(overrides or {})
    cfg = load_config(profile_path, overrides)
    out_dir = root / cfg.reports
    out_dir.mkdir(parents=True, exist_ok=True)
    same_run, kept = _earlier_run(out_dir / "provenance.json", cfg) if resume else (False, [])
    if same_run:
        overrides["resume"] = "auto"
        cfg = load_config(profile_path, overrides)
    if not only and not kept:  # a fresh full run starts a fresh metrics file; others update what is there
        (out_dir / "metrics.json").unlink(missing_ok=True)
    record = {**provenance(cfg), "params_hash": identity_hash(cfg), "profile_file": str(profile_path),
              "overrides": overrides, "stages": kept}
    parameters = {"profile": str(Path(profile_path).resolve()), "overrides": overrides}
    started = time.perf_counter()
    done = {s["notebook"] for s in kept}
    for notebook in notebooks(root / "notebooks", only):
        if notebook.stem in done:
            print(f"[{cfg.profile}] {notebook.name}: finished in an earlier run with these parameters, kept", flush=True)
            continue
        print(f"[{cfg.profile}] running {notebook.name} ...", flush=True)
        stage = run_notebook(notebook, out_dir, parameters, cfg.notebook_timeout, root)
        record["stages"].append(stage)
        print(f"[{cfg.profile}] {notebook.name}: {stage['status']} in {stage['seconds']} s", flush=True)
        if stage["status"] != "ok":
            break
    record["total_seconds"] = round(time.perf_counter() - started, 1)
    partial = out_dir / "provenance.json.tmp"
    partial.write_text(json.dumps(record, indent=2, default=str))
    partial.replace(out_dir / "provenance.json")
    index = write_index(out_dir, record)
    record["index"] = str(index)
    return record


def _earlier_run(path: Path, cfg) -> tuple[bool, list[dict]]:
    """(whether the earlier run had the same resolved parameters, the notebooks it finished in
    order up to the first that did not). Changed parameters: (False, []), the study starts afresh."""
    if not path.is_file():
        return False, []
    previous = json.loads(path.read_text())
    if previous.get("params_hash") != identity_hash(cfg):
        changes = changed_keys({k: v for k, v in previous.get("params", {}).items() if k in identity(cfg)}, identity(cfg))
        print(f"[{cfg.profile}] --resume: parameters changed since the last run ({'; '.join(changes) or 'unknown'}); "
              "running the study from the start", flush=True)
        return False, []
    kept = []
    for stage in previous.get("stages", []):
        if stage.get("status") != "ok":
            break
        kept.append({**stage, "kept_from_earlier_run": True})
    return True, kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", help="a profile YAML, e.g. params/demo.yaml")
    parser.add_argument("--only", nargs="*", help="run only notebooks whose names start with these (e.g. 01 04)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a profile key (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="skip notebooks that finished with the same parameters; training continues from checkpoints")
    args = parser.parse_args(argv)
    try:
        record = run_study(args.profile, args.only, overrides=parse_overrides(args.set), resume=args.resume)
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
