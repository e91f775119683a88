"""A notebook rule's job: the notebook executed by papermill in a fresh kernel with the run's
parameters (the profile and the overrides given to snakemake), then its reading copy (HTML, code
hidden). papermill writes the executed notebook to the rule's log first, which Snakemake keeps when
the job fails (it removes a failed job's outputs): the traceback is there. The kernel gets the
job's threads as its torch threads, and a training notebook the GPUs the job holds (gpus.py)."""

import os
import shutil
import sys
import uuid
from pathlib import Path

import nbformat
import papermill
from gpus import pin
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir
from nbconvert import HTMLExporter
from traitlets import default

from helpers.config import load_config


class IPCKernelManager(AsyncKernelManager):
    """Kernels talk to papermill over local IPC sockets, not TCP: nothing is sent over the network
    in plain text, and the kernel has no transport warning to print."""

    @default("transport")
    def _default_transport(self):
        return "ipc"

    @default("ip")
    def _default_ip(self):
        # The socket files' prefix, one per kernel: jupyter_client's default is a fixed relative path,
        # on which two jobs started side by side in one folder would meet.
        Path(jupyter_runtime_dir()).mkdir(parents=True, exist_ok=True)
        return str(Path(jupyter_runtime_dir()) / f"ct2-{uuid.uuid4().hex[:12]}-ipc")


def project_kernel(name: str = "ct2-detector") -> str:
    """The notebooks' own kernel (make setup registers it), registered for this Python when it is
    missing, so that the study never runs in another environment's `python3`."""
    from jupyter_client.kernelspec import KernelSpecManager

    if name not in KernelSpecManager().find_kernel_specs():
        from ipykernel.kernelspec import install

        install(kernel_name=name, display_name="CT2 detector", prefix=sys.prefix)
    return name


snakemake = globals()["snakemake"]  # set by Snakemake's script directive
profile = snakemake.config.get("profile")
# A killed job's training continues from its last complete checkpoint (resume: auto), which must be
# of the same run: one of other settings or code is refused, naming the change (--config resume=fresh
# starts such a training afresh).
overrides = {"resume": "auto", **{k: v for k, v in snakemake.config.items() if k != "profile"}}
cfg = load_config(str(Path(profile).resolve()), overrides)
# Where the rules' outputs are: relative to the engine's working directory, not to the project root
# the notebooks work from.
overrides.update(work_dir=str(Path(cfg.work_dir).resolve()), report_dir=str(Path(cfg.report_dir).resolve()))
os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(snakemake.threads)
# A notebook that trains, on GPUs of its own where the machine's are shared out; the kernel inherits them.
pin(getattr(snakemake.resources, "local_gpus", 0))
executed = Path(snakemake.log[0])
executed.parent.mkdir(parents=True, exist_ok=True)
papermill.execute_notebook(
    snakemake.input.notebook,
    str(executed),
    parameters={"profile": str(Path(profile).resolve()), "overrides": overrides},
    kernel_name=project_kernel(),
    cwd=str(Path(snakemake.input.notebook).parent),
    execution_timeout=cfg.notebook_timeout,
    progress_bar=False,
    log_output=False,
    kernel_manager_class=IPCKernelManager,
)
shutil.copyfile(executed, snakemake.output.ipynb)
exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
html, _ = exporter.from_notebook_node(nbformat.read(snakemake.output.ipynb, as_version=4))
Path(snakemake.output.html).write_text(html, encoding="utf-8")
