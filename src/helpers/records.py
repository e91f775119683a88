"""The run's hand-over file between notebooks and processes, runs/<profile>/record.json, and the
one way this package writes JSON (whole or not at all)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def record(cfg, section: str, values) -> Path:
    """Merge values under `section` into run_dir/record.json. Only the main process writes, and it
    replaces the file whole (never a half-written file)."""
    from . import distributed

    path = cfg.run_dir / "record.json"
    if not distributed.is_main():
        return path
    current = json.loads(path.read_text()) if path.is_file() else {}
    current[section] = values
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json(path, current)


def recorded(cfg, section: str, default=KeyError):
    path = cfg.run_dir / "record.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    if section not in current:
        if default is not KeyError:
            return default
        raise KeyError(f"'{section}' is not recorded in {path}: run the earlier notebooks of the study first")
    return current[section]


def write_json(path: Path, data) -> Path:
    """Write JSON whole or not at all (a reader never sees half a file)."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(data, indent=2, default=json_default))
    partial.replace(path)
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
