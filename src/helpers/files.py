"""Files and folders that several processes (or jobs) may build and others read: one writer at a
time (exclusive), and nothing read half-written (written_whole)."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import numpy as np
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


@contextlib.contextmanager
def written_whole(target: str | Path):
    """Yields a temporary path beside target (NAME.tmp, the suffix kept: NAME.tmp.npz) to write a
    file or a folder into; when the block ends without error it replaces target in one rename, so
    a reader sees the old target or the new one, never half of it. A killed or failed writer
    leaves only the temporary, which the next writer clears."""
    target = Path(target)
    partial = target.with_name(f"{target.stem}.tmp{target.suffix}" if target.suffix else f"{target.name}.tmp")
    _remove(partial)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield partial
    except BaseException:
        _remove(partial)
        raise
    if partial.is_dir():
        _remove(target)
    partial.replace(target)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_json(path: Path, data) -> Path:
    """Write JSON whole or not at all (a reader never sees half a file)."""
    with written_whole(path) as partial:
        partial.write_text(json.dumps(data, indent=2, default=json_default))
    return path


def json_default(value):
    """JSON for numpy scalars and arrays; anything else as text."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
