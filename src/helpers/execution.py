"""Executing the study's notebooks (helpers.run's runner): one notebook in a kernel with papermill,
its reading copy, and NotebookRunner, which runs the stages others run after in order and the rest
notebook_lanes side by side (notebooks/stages.yaml says which)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from helpers.kernel import ensure_kernel, study_kernel
from helpers.stage_table import TABLE_VARIABLE, Stage


def render_html(notebook: Path) -> Path:
    """The reading copy: code and stderr (progress bars, warnings) left out, errors kept; the
    executed notebook beside it keeps everything."""
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


def _failing_cell(output: Path) -> tuple[object, str]:
    """(execution count of the cell that did not complete, the end of its last output) from the
    executed notebook papermill saved as it ran."""
    import nbformat

    if not output.is_file():
        return None, ""
    cells = [c for c in nbformat.read(output, as_version=4).cells if c.cell_type == "code"]
    started = [c for c in cells if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    cell = next(
        (c for c in started if c["metadata"]["papermill"].get("status") != "completed"),
        started[-1] if started else None,
    )
    if cell is None:
        return None, ""
    texts = [
        o.get("text") or "\n".join(o.get("traceback") or []) or str(o.get("data", {}).get("text/plain", ""))
        for o in cell.get("outputs", [])
    ]
    text = "".join(t if isinstance(t, str) else "".join(t) for t in texts).strip()
    return cell.get("execution_count"), text[-600:]


def run_notebook(
    notebook: Path,
    out_dir: Path,
    parameters: dict,
    timeout: int,
    kernel,
    threads: int | None = None,
    progress_bar: bool = True,
) -> dict:
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
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name=ensure_kernel(),
            execution_timeout=timeout,
            progress_bar=progress_bar,
            km=kernel.manager,
        )
        stage["status"] = "ok"
    except PapermillExecutionError as error:
        stage.update(status="failed", error=f"{error.ename}: {error.evalue}", cell=error.exec_count)
    except Exception as error:  # noqa: BLE001 (nbclient's CellTimeoutError, DeadKernelError, a kernel that never started)
        cell, last_output = _failing_cell(output)
        what = {
            "CellTimeoutError": f"a cell ran past notebook_timeout ({timeout} s)",
            "DeadKernelError": "the kernel died (out of memory?)",
        }.get(type(error).__name__, "the notebook stopped")
        stage.update(
            status="failed",
            error=f"{type(error).__name__}: {what}: {str(error).strip()[:300]}",
            cell=cell,
            last_output=last_output,
        )
    stage["seconds"] = round(time.perf_counter() - started, 1)
    return stage


FINISHED = ("ok", "off")


def heaviest_first(cfg, stages: list) -> list:
    """By the models each trains from scratch, most first; ties in table order."""
    return sorted(stages, key=lambda stage: -stage.trainings_under(cfg))


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class NotebookRunner:
    """Runs the study's notebooks: in order those that other stages run after, then the rest `lanes` at a time, each
    lane with a kernel of its own (or one per notebook) and cores // lanes torch threads, whatever
    the timing, so a notebook's numbers do not depend on which lane ran it. After a failure no
    notebook starts; those running finish."""

    def __init__(self, cfg, table, out_dir: Path, parameters: dict, root: Path, kernel_per_notebook: bool):
        self.cfg, self.table, self.out_dir, self.parameters, self.root = cfg, table, out_dir, parameters, root
        self.kernel_per_notebook = kernel_per_notebook
        self.kernel_env = {TABLE_VARIABLE: str(table.path)}  # the notebooks read this run's table
        self.stages: list[dict] = []
        self.rendered: list = []
        self.failed = threading.Event()
        self.stopped = threading.Event()  # Ctrl-C
        self.active: set = set()  # the kernels running a notebook now

    def run(self, to_run: list[Stage]) -> list[dict]:
        # The reading copies are rendered beside the next notebook, not before it starts (the first
        # one, with nbconvert's import, takes seconds); all are written when run() returns.
        with ThreadPoolExecutor(1) as self.renders:
            self._run_all(to_run)
        for rendered in self.rendered:
            rendered.result()
        return self.stages

    def _run_all(self, to_run: list[Stage]) -> None:
        in_order = [s for s in to_run if self.table.runs_in_order(s)]
        queue = [s for s in to_run if not self.table.runs_in_order(s)]
        lanes = max(1, min(self.cfg.notebook_lanes, len(queue)))
        if lanes > 1:
            queue = heaviest_first(self.cfg, queue)
        with contextlib.ExitStack() as stack:
            # None: each notebook starts a kernel of its own (_run_one).
            kernels = [
                None if self.kernel_per_notebook else stack.enter_context(study_kernel(self.root, self.kernel_env))
                for _ in range(lanes)
            ]
            for kernel in kernels[1:]:
                if kernel is not None and in_order:
                    kernel.warm_up()  # on the core the in-order notebooks leave partly idle
            try:
                self._lanes(in_order, queue, kernels)
            except KeyboardInterrupt:
                self.stop()
                raise

    def _lanes(self, in_order: list, queue: list, kernels: list) -> None:
        self._lane(in_order, kernels[0], None, 1)
        if len(kernels) == 1 or self.failed.is_set():
            self._lane(queue, kernels[0], None, 1)
            return
        threads = max(1, cores() // len(kernels))
        # Not a with-block, which would wait for the lanes: on Ctrl-C, stop() shuts their kernels down first.
        pool = ThreadPoolExecutor(len(kernels))
        try:
            for future in [pool.submit(self._lane, queue, kernel, threads, len(kernels)) for kernel in kernels]:
                future.result()
        finally:
            pool.shutdown(wait=False)

    def stop(self) -> None:
        """Ctrl-C: no notebook starts, and the kernels of those running are shut down, so that their
        lanes end now rather than when their notebooks would have."""
        self.stopped.set()
        self.failed.set()
        # Their notebooks' pending reads then fail with DeadKernelError, which papermill logs and
        # asyncio prints as the traceback of a task nobody awaits; the run answers Ctrl-C in one line.
        for name in ("asyncio", "papermill"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        for kernel in list(self.active):
            kernel.close()

    def _lane(self, queue: list, kernel, threads: int | None, lanes: int) -> None:
        while queue and not self.failed.is_set():
            try:
                stage = queue.pop(0)  # atomic: each notebook goes to one lane
            except IndexError:  # the other lane took the last one
                return
            self._run_one(stage, kernel, threads, lanes)

    def _run_one(self, stage, kernel, threads: int | None, lanes: int) -> None:
        cfg = self.cfg
        notebook = self.root / "notebooks" / f"{stage.notebook}.ipynb"
        why = stage.switched_off(cfg)
        if why:
            print(f"[{cfg.profile}] {notebook.name}: not run, {why}", flush=True)
            self.stages.append(
                {"notebook": stage.notebook, "title": stage.title, "status": "off", "error": why, "seconds": 0.0}
            )
            return
        print(
            f"[{cfg.profile}] running {notebook.name} ..."
            + (f" ({threads} torch thread(s), {lanes} side by side)" if lanes > 1 else ""),
            flush=True,
        )
        with contextlib.ExitStack() as stack:
            if kernel is None:
                kernel = stack.enter_context(study_kernel(self.root, self.kernel_env))
            self.active.add(kernel)
            stack.callback(self.active.discard, kernel)
            ran = run_notebook(
                notebook, self.out_dir, self.parameters, cfg.notebook_timeout, kernel, threads, progress_bar=lanes == 1
            )
        if self.stopped.is_set() and ran["status"] not in FINISHED:
            return  # its kernel was shut down by stop(): not the notebook's own failure
        if (self.out_dir / notebook.name).is_file():
            self.rendered.append(self.renders.submit(render_html, self.out_dir / notebook.name))
        self.stages.append({**ran, "title": stage.title})
        print(f"[{cfg.profile}] {notebook.name}: {ran['status']} in {ran['seconds']} s", flush=True)
        if ran["status"] not in FINISHED:
            self.failed.set()
