"""The kernel the runner executes notebooks in: the project's named kernel over local IPC sockets,
started once for the whole study and given a fresh namespace before each notebook.

Why one kernel: importing torch, transformers' Trainer and the model code takes about 10 s of
every notebook on a 2-core machine (a kernel of its own re-imports them), which is a third of
the demo study. Between notebooks the user namespace, the execution count, open figures and
cached GPU memory are cleared, so a notebook sees none of its predecessor's variables, exactly
as when it is opened in JupyterLab; only imported modules stay loaded. `helpers.run --kernel-per-notebook` gives
each notebook a kernel of its own instead. Notebooks that run side by side (the runner's lanes)
each have a kernel of their own, told how many torch threads to use."""

from __future__ import annotations

import os
import sys
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

KERNEL = "ct2-detector"
KERNEL_DISPLAY = "CT2 detector"

# Sent to a lane's kernel while notebooks 01-03 run, so its first notebook does not wait on them.
WARM_UP = "import torch, transformers.trainer, matplotlib.pyplot, helpers.study.stages, helpers.analyses.common"
# Sent before each notebook; runs clear_namespace inside the kernel (nothing is left in its namespace).
FRESH_NAMESPACE = "__import__('helpers.kernel', fromlist=['clear_namespace']).clear_namespace(get_ipython(), {threads})"


def clear_namespace(shell, threads: int | None = None) -> None:
    """In the kernel: close open figures, empty the user namespace and set the execution count back
    to 1 (reset(new_session=True); the %reset magic keeps the count), free memory the previous
    notebook held, GPU cache included. threads: torch's intra-op threads for the next notebook
    (None: as they are)."""
    import gc

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
    shell.reset(new_session=True)
    gc.collect()
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        sys.modules["torch"].cuda.empty_cache()
    if threads:
        import torch

        torch.set_num_threads(threads)


def ensure_kernel() -> str:
    """The project's named kernel, registered for this Python (its environment prefix) if it is
    not there, so that the study never runs in another environment's `python3` kernel."""
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL not in KernelSpecManager().find_kernel_specs():
        from ipykernel.kernelspec import install

        install(kernel_name=KERNEL, display_name=KERNEL_DISPLAY, prefix=sys.prefix)
    return KERNEL


def ipc_kernel_manager():
    """Kernels talk to papermill over local IPC sockets, not TCP: nothing is sent over the network
    in plain text, and the kernel has no transport warning to print."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self):
            return "ipc"

        @default("ip")
        def _default_ip(self):
            # The socket files' prefix; jupyter_client's default is relative, which the kernel and the
            # runner read from their own working directories (they differ with a shared kernel).
            from jupyter_core.paths import jupyter_runtime_dir

            Path(jupyter_runtime_dir()).mkdir(parents=True, exist_ok=True)
            return str(Path(jupyter_runtime_dir()) / f"ct2-{uuid.uuid4().hex[:12]}-ipc")

    return IPCKernelManager


class SharedKernel:
    """A started kernel; papermill runs a notebook in it when given `manager` (nbclient leaves a
    kernel it did not start running)."""

    def __init__(self, cwd: Path, env: dict | None = None, startup_timeout: int = 120):
        from jupyter_core.utils import run_sync

        self._run_sync = run_sync
        self.startup_timeout = startup_timeout
        self.manager = ipc_kernel_manager()(kernel_name=ensure_kernel())
        run_sync(self.manager.start_kernel)(cwd=str(cwd), env={**os.environ, **(env or {})})

    def _execute(self, code: str) -> dict:
        client = self.manager.blocking_client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=self.startup_timeout)
            return client.execute_interactive(code, silent=True, store_history=False, timeout=self.startup_timeout)
        finally:
            client.stop_channels()

    def warm_up(self) -> None:
        """Import the study's heavy modules in the background (what fresh_namespace then clears is
        only the namespace; the modules stay loaded)."""
        self._warming = threading.Thread(target=self._execute, args=(WARM_UP,), daemon=True)
        self._warming.start()

    def fresh_namespace(self, threads: int | None = None) -> None:
        if getattr(self, "_warming", None) is not None:
            self._warming.join()
            self._warming = None
        reply = self._execute(FRESH_NAMESPACE.format(threads=threads))
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"the shared kernel could not clear its namespace: {reply['content'].get('evalue')}")

    def alive(self) -> bool:
        return bool(self._run_sync(self.manager.is_alive)())

    def close(self) -> None:
        if self.manager.has_kernel:
            self._run_sync(self.manager.shutdown_kernel)(now=True)


@contextmanager
def study_kernel(cwd: Path, env: dict | None = None):
    """A SharedKernel started in cwd, with these environment variables added, shut down at the end."""
    kernel = SharedKernel(cwd, env)
    try:
        yield kernel
    finally:
        kernel.close()
