"""One writer at a time for a file or folder that several processes (or jobs) may build."""
from __future__ import annotations

import contextlib
from pathlib import Path

from filelock import FileLock


@contextlib.contextmanager
def exclusive(target: str | Path):
    """Hold the lock file beside target. A process that waits sleeps in the lock, outside any
    collective, so no process-group timeout applies however long the build takes: on a shared
    work_dir a build happens once per cluster, on node-local disks once per node."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.with_name(target.name + ".lock"))):
        yield
