"""Run the notebook study for one profile: python -m helpers.run params/<profile>.yaml

Executes notebooks/NN_*.ipynb with papermill: 01-03 in order, then from 04 on notebook_lanes at a
time (NotebookRunner), each lane in one kernel with a fresh namespace for each notebook
(helpers.kernel: the project's kernel, ct2-detector, registered for this Python when missing;
--kernel-per-notebook starts one per notebook); an execution timeout; the parameters are the
profile file and the overrides given with --set), into reports/<profile>/: each executed notebook,
its HTML reading copy (code hidden), provenance.json, and index.html. A failing notebook stops the
run with the failing cell's error (no notebook starts after it); what ran is kept and indexed.

--resume restarts at the first notebook that did not finish, keeping the ones before it that
finished with the same parameters (each notebook's hash covers the keys it reads, so changing
the seed study keeps notebooks 01-04), and lets the training stages continue from their
checkpoints (resume: auto). If a parameter that decides a training changed, the study runs
again from the start, fresh, and says which.

A cell error, a cell past notebook_timeout and a dead kernel (out of memory) all stop the run
the same way: provenance.json and index.html are written, naming the failing notebook and cell
with its last output.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from helpers.config import ConfigError, load_config
from helpers.overrides import parse_overrides
from helpers.identity import changed_keys, identity, identity_hash, training_identity
from helpers.kernel import ensure_kernel, study_kernel
from helpers.study.provenance import provenance, recorded_data
from helpers.study.records import clear_report, metrics, write_json
from helpers.study.report import write_index

def notebooks(folder: Path, only: list[str] | None = None) -> list[Path]:
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [nb for nb in found if any(nb.stem.startswith(o) for o in only)]
    if not found:
        raise FileNotFoundError(f"no notebooks to run in {folder}" + (f" matching {only}" if only else ""))
    return found


def render_html(notebook: Path) -> Path:
    """The reading copy: code, stderr (progress bars, warnings) and the work log of cells tagged
    hide-output (a chapter's call; its result is shown by the next cell) left out, errors kept; the
    executed notebook beside it keeps everything."""
    import nbformat
    from nbconvert import HTMLExporter

    node = nbformat.read(notebook, as_version=4)
    for cell in node.cells:
        if cell.cell_type == "code":
            hidden = "hide-output" in cell.get("metadata", {}).get("tags", [])
            cell.outputs = [o for o in cell.get("outputs", []) if o.get("name") != "stderr"
                            and (not hidden or o.get("output_type") == "error")]
    body, _ = HTMLExporter(exclude_input=True).from_notebook_node(node)
    out = notebook.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


# Which keys a notebook reads beyond the study's core: the core (01-04) reads none of the analyses'
# keys, an analysis none of the outside sets' (but the baselines and notebook 13, which score them
# too), the outside sets' notebook none of the analyses'.
ANALYSIS_KEYS = ("analyses", "analysis_epochs", "seeds", "view_captions")
READ_OUTSIDE_SETS = ("baselines", "beyond")


def notebook_hash(cfg, stem: str) -> str:
    """The hash of the parameters this notebook reads."""
    ignored = (ANALYSIS_KEYS if "external" in stem else () if any(n in stem for n in READ_OUTSIDE_SETS)
               else ("external",) if stem[:2] > "04" else ANALYSIS_KEYS + ("external",))
    return identity_hash({k: v for k, v in identity(cfg).items() if k not in ignored})


def _failing_cell(output: Path) -> tuple[object, str]:
    """(execution count of the cell that did not complete, the end of its last output) from the
    executed notebook papermill saved as it ran."""
    import nbformat

    if not output.is_file():
        return None, ""
    cells = [c for c in nbformat.read(output, as_version=4).cells if c.cell_type == "code"]
    started = [c for c in cells if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    cell = next((c for c in started if c["metadata"]["papermill"].get("status") != "completed"),
                started[-1] if started else None)
    if cell is None:
        return None, ""
    texts = [o.get("text") or "\n".join(o.get("traceback") or []) or str(o.get("data", {}).get("text/plain", ""))
             for o in cell.get("outputs", [])]
    text = "".join(t if isinstance(t, str) else "".join(t) for t in texts).strip()
    return cell.get("execution_count"), text[-600:]


def run_notebook(notebook: Path, out_dir: Path, parameters: dict, timeout: int, kernel, threads: int | None = None,
                 progress_bar: bool = True) -> dict:
    """Execute one notebook in `kernel` (a kernel.SharedKernel, its namespace cleared first and
    given `threads` torch threads) into out_dir (its reading copy is render_html's)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = out_dir / notebook.name
    started = time.perf_counter()
    stage = {"notebook": notebook.stem, "ipynb": output.name, "html": output.with_suffix(".html").name}
    try:
        kernel.fresh_namespace(threads)
        # No cwd: the kernel started in the project root, and papermill's chdir is not thread-safe.
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=ensure_kernel(),
                                   execution_timeout=timeout, progress_bar=progress_bar, km=kernel.manager)
        stage["status"] = "ok"
    except PapermillExecutionError as error:
        stage.update(status="failed", error=f"{error.ename}: {error.evalue}", cell=error.exec_count)
    except Exception as error:  # noqa: BLE001 (nbclient's CellTimeoutError, DeadKernelError, a kernel that never started)
        cell, last_output = _failing_cell(output)
        what = {"CellTimeoutError": f"a cell ran past notebook_timeout ({timeout} s)",
                "DeadKernelError": "the kernel died (out of memory?)"}.get(type(error).__name__, "the notebook stopped")
        stage.update(status="failed", error=f"{type(error).__name__}: {what}: {str(error).strip()[:300]}", cell=cell,
                     last_output=last_output)
    stage["seconds"] = round(time.perf_counter() - started, 1)
    return stage


# Notebooks 01-03 make the data and train the stages every later notebook reads; from 04 on each
# notebook reads them and writes only its own part of the report (record files are merged under a
# lock, shared trainings and sets are built once under theirs), so these may run side by side.
SIDE_BY_SIDE_FROM = "04"


# Models each analysis notebook trains from scratch under a profile (its shared ones counted in each
# notebook that asks): the side-by-side notebooks start heaviest first, so the lanes end together
# instead of one notebook with many trainings running alone at the end on cores // lanes threads.
TRAININGS = {"07": lambda cfg: 3, "08": lambda cfg: 5, "10": lambda cfg: len(cfg.seeds) - 1,
             "13": lambda cfg: 2 * len(cfg.seeds) + 1}


def heaviest_first(cfg, notebooks: list[Path]) -> list[Path]:
    """By trainings, most first; ties (the notebooks that train nothing) in number order."""
    count = {nb: TRAININGS.get(nb.stem[:2], lambda cfg: 0)(cfg) for nb in notebooks}
    return sorted(notebooks, key=lambda nb: -count[nb])


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class NotebookRunner:
    """Runs the study's notebooks: in order up to SIDE_BY_SIDE_FROM, then `lanes` at a time, each
    lane with a kernel of its own (or one per notebook) and cores // lanes torch threads, whatever
    the timing, so a notebook's numbers do not depend on which lane ran it. After a failure no
    notebook starts; those running finish."""

    def __init__(self, cfg, out_dir: Path, parameters: dict, root: Path, kernel_per_notebook: bool):
        self.cfg, self.out_dir, self.parameters, self.root = cfg, out_dir, parameters, root
        self.kernel_per_notebook = kernel_per_notebook
        self.stages: list[dict] = []
        self.rendered: list = []
        self.failed = threading.Event()

    def run(self, to_run: list[Path]) -> list[dict]:
        # The reading copies are rendered beside the next notebook, not before it starts (the first
        # one, with nbconvert's import, takes seconds); all are written when run() returns.
        with ThreadPoolExecutor(1) as self.renders:
            self._run_all(to_run)
        for rendered in self.rendered:
            rendered.result()
        return self.stages

    def _run_all(self, to_run: list[Path]) -> None:
        in_order = [nb for nb in to_run if nb.stem[:2] < SIDE_BY_SIDE_FROM]
        queue = [nb for nb in to_run if nb.stem[:2] >= SIDE_BY_SIDE_FROM]
        lanes = max(1, min(self.cfg.notebook_lanes, len(queue)))
        if lanes > 1:
            queue = heaviest_first(self.cfg, queue)
        with contextlib.ExitStack() as stack:
            # None: each notebook starts a kernel of its own (_run_one).
            kernels = [None if self.kernel_per_notebook else stack.enter_context(study_kernel(self.root))
                       for _ in range(lanes)]
            for kernel in kernels[1:]:
                if kernel is not None and in_order:
                    kernel.warm_up()  # on the core the in-order notebooks leave partly idle
            self._lane(in_order, kernels[0], None, 1)
            if lanes == 1 or self.failed.is_set():
                self._lane(queue, kernels[0], None, 1)
                return
            threads = max(1, cores() // lanes)
            with ThreadPoolExecutor(lanes) as pool:
                running = [pool.submit(self._lane, queue, kernel, threads, lanes) for kernel in kernels]
                for future in running:
                    future.result()

    def _lane(self, queue: list[Path], kernel, threads: int | None, lanes: int) -> None:
        while queue and not self.failed.is_set():
            try:
                notebook = queue.pop(0)  # atomic: each notebook goes to one lane
            except IndexError:  # the other lane took the last one
                return
            self._run_one(notebook, kernel, threads, lanes)

    def _run_one(self, notebook: Path, kernel, threads: int | None, lanes: int) -> None:
        cfg = self.cfg
        print(f"[{cfg.profile}] running {notebook.name} ..." + (f" ({threads} torch thread(s), {lanes} side by side)"
                                                               if lanes > 1 else ""), flush=True)
        with contextlib.ExitStack() as stack:
            if kernel is None:
                kernel = stack.enter_context(study_kernel(self.root))
            stage = run_notebook(notebook, self.out_dir, self.parameters, cfg.notebook_timeout, kernel, threads,
                                 progress_bar=lanes == 1)
        stage["params_hash"] = notebook_hash(cfg, notebook.stem)
        if (self.out_dir / notebook.name).is_file():
            self.rendered.append(self.renders.submit(render_html, self.out_dir / notebook.name))
        self.stages.append(stage)
        print(f"[{cfg.profile}] {notebook.name}: {stage['status']} in {stage['seconds']} s", flush=True)
        if stage["status"] != "ok":
            self.failed.set()


def run_study(profile_path: str | Path, only: list[str] | None = None, root: Path | None = None,
              overrides: dict | None = None, resume: bool = False, kernel_per_notebook: bool = False) -> dict:
    root = (root or Path.cwd()).resolve()
    overrides = dict(overrides or {})
    cfg = load_config(profile_path, overrides)
    out_dir = root / cfg.reports
    out_dir.mkdir(parents=True, exist_ok=True)
    to_run = notebooks(root / "notebooks", only)
    previous = _previous(out_dir / "provenance.json")
    same_training, kept = _earlier_run(previous, cfg, to_run) if resume else (False, [])
    if same_training:
        overrides["resume"] = "auto"
        cfg = load_config(profile_path, overrides)
    if not only and not kept:
        clear_report(out_dir)
    # --only re-runs some notebooks: the others keep their entries (with the hash they ran under).
    others = [{**s, "from_earlier_run": True} for s in previous.get("stages", [])
              if only and s["notebook"] not in {nb.stem for nb in to_run}]
    record = {**provenance(cfg), "params_hash": identity_hash(cfg), "profile_file": str(profile_path),
              "overrides": overrides, "stages": kept}
    parameters = {"profile": str(Path(profile_path).resolve()), "overrides": overrides}
    started = time.perf_counter()
    done = {s["notebook"] for s in kept}
    for stem in sorted(done):
        print(f"[{cfg.profile}] {stem}: finished in an earlier run with these parameters, kept", flush=True)
    runner = NotebookRunner(cfg, out_dir, parameters, root, kernel_per_notebook)
    record["stages"] += runner.run([nb for nb in to_run if nb.stem not in done])
    record["stages"] = sorted(record["stages"] + others, key=lambda s: s["notebook"])
    record["total_seconds"] = round(time.perf_counter() - started, 1)
    record["data_revisions"] = recorded_data(cfg, root)
    write_json(out_dir / "provenance.json", record)
    from helpers.study.stages import refresh_cards  # torch and the model code: imported once the notebooks ran

    refresh_cards(cfg, root, metrics(out_dir))
    index = write_index(out_dir, record)
    record["index"] = str(index)
    return record


def _previous(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _earlier_run(previous: dict, cfg, to_run: list[Path]) -> tuple[bool, list[dict]]:
    """(whether the earlier run trained under the same settings, the notebooks to keep: in order,
    up to the first that did not finish or read other parameters). A changed training setting:
    (False, []), the study starts afresh."""
    if not previous:
        return False, []
    old = previous.get("params", {})
    changes = changed_keys(training_identity(old, "after"), training_identity(cfg, "after"))
    if changes:
        print(f"[{cfg.profile}] --resume: training settings changed since the last run ({'; '.join(changes)}); "
              "running the study from the start", flush=True)
        return False, []
    by_name = {s["notebook"]: s for s in previous.get("stages", [])}
    kept = []
    for notebook in to_run:
        stage = by_name.get(notebook.stem)
        if not stage or stage.get("status") != "ok" or stage.get("params_hash") != notebook_hash(cfg, notebook.stem):
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
    parser.add_argument("--kernel-per-notebook", action="store_true",
                        help="a fresh kernel for each notebook (slower: each re-imports torch and transformers)")
    args = parser.parse_args(argv)
    try:
        record = run_study(args.profile, args.only, overrides=parse_overrides(args.set), resume=args.resume,
                           kernel_per_notebook=args.kernel_per_notebook)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = [s for s in record["stages"] if s["status"] != "ok" and not s.get("from_earlier_run")]
    if failed:
        stage = failed[0]
        tail = f"\n  its last output:\n    {stage['last_output'][-300:]}" if stage.get("last_output") else ""
        print(f"error: {stage['notebook']} failed at cell [{stage['cell']}]: {stage['error']}\n"
              f"  executed notebook with the traceback: {Path(record['index']).parent / stage['ipynb']}{tail}",
              file=sys.stderr)
        return 1
    print(f"report: {record['index']}  ({record['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
