"""`make lab`: JupyterLab on the project opens the study's notebooks with the project's own kernel.
The facts are read from the files that decide them; no server needs to boot for that."""

import json
import os
import sys

import pytest

from conftest import ROOT


def test_every_notebook_asks_for_the_project_kernel_and_that_kernel_is_this_python():
    """make setup registers the kernel in this environment; the engine runs the notebooks in it."""
    from jupyter_client.kernelspec import KernelSpecManager

    kernel = "ct2-detector"
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(notebooks) >= 11
    for notebook in notebooks:
        assert json.loads(notebook.read_text())["metadata"]["kernelspec"]["name"] == kernel, notebook.name
    assert (
        "--name $(KERNEL)" in (ROOT / "Makefile").read_text()
        and f"KERNEL := {kernel}" in (ROOT / "Makefile").read_text()
    )
    spec = KernelSpecManager().get_kernel_spec(kernel)
    # The kernel runs this environment's interpreter, never another environment's `python3`.
    assert spec.argv[0] == sys.executable and spec.resource_dir.startswith(sys.prefix)


@pytest.mark.slow
def test_make_lab_serves_this_checkouts_notebooks_and_opens_on_them(tmp_path):
    """The server `make lab` starts (its command as make would run it, with the running interpreter's
    Jupyter in place of .venv's: the suite runs in any environment) lists this checkout's notebooks
    and sends a browser that opens it to the notebooks folder."""
    import shlex
    import socket
    import subprocess
    import time
    import urllib.request

    command = subprocess.run(
        ["make", "--no-print-directory", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    lab = shlex.split(next(line for line in command.splitlines() if "jupyter lab" in line))
    assert lab[0].endswith("/jupyter") and lab[1] == "lab"
    lab = [sys.executable, "-m", "jupyter", *lab[1:]]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            *lab,
            "--no-browser",
            f"--ServerApp.port={port}",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.token=",
            "--ServerApp.port_retries=0",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)},
    )
    try:
        listing = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/notebooks", timeout=2) as reply:
                    listing = json.load(reply)
                break
            except OSError:
                time.sleep(0.5)
        assert listing is not None, "the server did not answer"
        served = sorted(item["name"] for item in listing["content"] if item["name"].endswith(".ipynb"))
        assert served == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
        opener = urllib.request.build_opener(
            type("NoRedirect", (urllib.request.HTTPRedirectHandler,), {"redirect_request": lambda *a, **k: None})
        )
        try:
            opener.open(f"http://127.0.0.1:{port}/", timeout=5)
            location = ""
        except urllib.error.HTTPError as redirect:
            location = redirect.headers["Location"]
        assert location.split("?")[0].endswith("/lab/tree/notebooks")  # the Makefile's LabApp.default_url
    finally:
        server.terminate()
        server.wait(timeout=30)
