"""The run's record files, written whole (files.write_json): runs/<profile>/record.json, the
hand-over between notebooks and processes (each merge holds its lock from read to replace, so
notebooks side by side never lose each other's sections), and reports/<profile>/records/<name>.json,
what a notebook found, for the report."""

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


def write_record(cfg, name: str, values: dict) -> Path:
    """Merge values into reports/<profile>/records/<name>.json, one level deep (a notebook that writes
    its record in parts). Each record has one writer, the notebook the engine declares it for; the
    index merges the records of the run's stages into metrics.json. Numbers are stored as plain JSON
    (numpy scalars and arrays converted)."""
    path = cfg.reports / "records" / f"{name}.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    return write_json(path, merge(current, json.loads(json.dumps(values, default=json_default))))


def merge(current: dict, values: dict) -> dict:
    """values merged into current one level deep (a section such as 'analyses' gains entries, a
    value replaces the one it meets); current, changed."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            current[key].update(value)
        else:
            current[key] = value
    return current
