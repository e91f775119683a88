"""`make lab`: a JupyterLab server on the project with its own kernel lists the study's notebooks."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

pytest.importorskip("jupyterlab", reason="the lab extra (make setup installs it)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_jupyterlab_serves_the_numbered_notebooks_with_the_project_kernel(tmp_path):
    from helpers.run import KERNEL, ensure_kernel

    ensure_kernel()
    port, token = _free_port(), "ct2-test-token"
    jupyter = Path(sys.executable).with_name("jupyter")
    server = subprocess.Popen([str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}", "--allow-root",
                               "--ServerApp.open_browser=False"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path)})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, status = time.time() + 90, None
        while time.time() < deadline and server.poll() is None:
            try:
                status = _get(f"{base}/api/status", token)
                break
            except OSError:
                time.sleep(0.5)
        assert status is not None, "the JupyterLab server did not answer within 90 s"
        listing = _get(f"{base}/api/contents/notebooks", token)
        names = sorted(item["name"] for item in listing["content"])
        assert names == sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) and len(names) >= 10
        assert KERNEL in _get(f"{base}/api/kernelspecs", token)["kernelspecs"]
        notebook = _get(f"{base}/api/contents/notebooks/{names[0]}", token)
        assert notebook["content"]["metadata"]["kernelspec"]["name"] == KERNEL
    finally:
        server.terminate()
        server.wait(timeout=30)
