"""The run's record files, each with one writer here: runs/<profile>/record.json (the hand-over
between notebooks and processes) and reports/<profile>/metrics.json (what the index page shows), written whole (files.write_json). Each merge holds the file's lock
from read to replace: notebooks that run side by side (helpers.run's lanes) never lose each
other's sections."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.files import exclusive, json_default, write_json
from helpers.training import distributed


def record(cfg, section: str, values) -> Path:
    """Merge values under `section` into run_dir/record.json. Only the main process writes, and it
    replaces the file whole (never a half-written file)."""
    path = cfg.run_dir / "record.json"
    if not distributed.is_main():
        return path
    with exclusive(path):
        current = json.loads(path.read_text()) if path.is_file() else {}
        current[section] = values
        return write_json(path, current)


def recorded(cfg, section: str, default=KeyError):
    path = cfg.run_dir / "record.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    if section not in current:
        if default is not KeyError:
            return default
        raise KeyError(f"'{section}' is not recorded in {path}: run the earlier notebooks of the study first")
    return current[section]


def update_metrics(cfg, values: dict, section: str | None = None) -> Path:
    """Merge values into reports/<profile>/metrics.json, at the top or under `section` (analyses,
    external). Numbers are stored as plain JSON (numpy scalars and arrays converted)."""
    path = cfg.reports / "metrics.json"
    values = json.loads(json.dumps(values, default=json_default))
    with exclusive(path):
        current = json.loads(path.read_text()) if path.is_file() else {}
        (current.setdefault(section, {}) if section else current).update(values)
        return write_json(path, current)


def metrics(report_dir: Path) -> dict:
    path = Path(report_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def clear_report(report_dir: Path) -> None:
    """A fresh full run starts with no metrics, figures or predictions of another run."""
    import shutil

    report_dir = Path(report_dir)
    (report_dir / "metrics.json").unlink(missing_ok=True)
    for folder in ("figures", "predictions"):
        shutil.rmtree(report_dir / folder, ignore_errors=True)
