"""`make lab`: JupyterLab on the project opens the study's notebooks with the project's own kernel.
The facts are read from the files that decide them; no server needs to boot for that."""
import json
import sys

from conftest import ROOT


def test_every_notebook_asks_for_the_project_kernel_and_that_kernel_is_this_python():
    from jupyter_client.kernelspec import KernelSpecManager

    from helpers.kernel import KERNEL, ensure_kernel

    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(notebooks) >= 11
    for notebook in notebooks:
        assert json.loads(notebook.read_text())["metadata"]["kernelspec"]["name"] == KERNEL, notebook.name
    ensure_kernel()
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    # The kernel runs this environment's interpreter, never another environment's `python3`.
    assert spec.argv[0] == sys.executable and spec.resource_dir.startswith(sys.prefix)


def test_make_lab_opens_the_notebooks_folder_of_this_checkout():
    makefile = (ROOT / "Makefile").read_text()
    lab = makefile[makefile.index("\nlab:"):].split("\n\n")[0]
    assert "--ServerApp.root_dir=$(CURDIR)" in lab and "--ServerApp.default_url=/lab/tree/notebooks" in lab
    assert "jupyterlab" in (ROOT / "pyproject.toml").read_text()
