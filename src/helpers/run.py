"""Run the notebook study for one profile: python -m helpers.run params/<profile>.yaml

Executes the notebooks of notebooks/stages.yaml with papermill: those that later ones run after in
order, then the rest notebook_lanes at a time (helpers.execution.NotebookRunner), each lane in one
kernel with a fresh namespace for each notebook (helpers.kernel: the project's kernel,
ct2-detector, registered for this Python when missing;
--kernel-per-notebook starts one per notebook); an execution timeout; the parameters are the
profile file and the overrides given with --set), into reports/<profile>/: each executed notebook,
its HTML reading copy (code hidden), profile.yaml (the resolved profile), provenance.json, and
index.html. A failing notebook stops the
run with the failing cell's error (no notebook starts after it); what ran is kept and indexed.

--resume restarts at the first notebook that did not finish, keeping the ones before it that
finished with the same parameters (each notebook's hash covers the profile sections its entry in
the stage table reads, so changing the seed study keeps the stages before the analyses), and lets
the training stages continue from their checkpoints (resume: auto). If a parameter that decides a training changed, the study runs
again from the start, fresh, and says which.

A cell error, a cell past notebook_timeout and a dead kernel (out of memory) all stop the run
the same way: provenance.json and index.html are written, naming the failing notebook and cell
with its last output.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from helpers.config import ConfigError, load_config
from helpers.execution import FINISHED, NotebookRunner
from helpers.files import write_json
from helpers.identity import changed_keys, identity_hash
from helpers.overrides import parse_overrides
from helpers.profiles import write_resolved
from helpers.stage_table import Stage, StageTable, StageTableError, load_table
from helpers.study.provenance import provenance, recorded_data
from helpers.study.records import clear_report, metrics
from helpers.study.report import write_index


def run_study(
    profile_path: str | Path,
    only: list[str] | None = None,
    root: Path | None = None,
    overrides: dict | None = None,
    resume: bool = False,
    kernel_per_notebook: bool = False,
) -> dict:
    root = (root or Path.cwd()).resolve()
    overrides = dict(overrides or {})
    cfg = load_config(profile_path, overrides)
    out_dir = root / cfg.reports
    out_dir.mkdir(parents=True, exist_ok=True)
    table = load_table(root / "notebooks" / "stages.yaml")
    to_run = table.to_run(root / "notebooks", only)
    previous = _previous(out_dir / "provenance.json")
    same_training, kept = _earlier_run(previous, cfg, table, to_run) if resume else (False, [])
    if same_training:
        overrides["resume"] = "auto"
        cfg = load_config(profile_path, overrides)
    if not only and not kept:
        set_aside_complete_report(out_dir)
        clear_report(out_dir)
    # --only re-runs some notebooks: the others keep their entries (with the hash they ran under).
    others = [
        {**s, "from_earlier_run": True}
        for s in previous.get("stages", [])
        if only and s["notebook"] not in {stage.notebook for stage in to_run}
    ]
    record = {
        **provenance(cfg),
        "params_hash": identity_hash(cfg),
        "profile_file": str(profile_path),
        "overrides": overrides,
        "stages": kept,
    }
    parameters = {"profile": str(Path(profile_path).resolve()), "overrides": overrides}
    write_resolved(cfg, out_dir / "profile.yaml")
    started = time.perf_counter()
    done = {s["notebook"] for s in kept}
    for stem in sorted(done):
        print(f"[{cfg.profile}] {stem}: finished in an earlier run with these parameters, kept", flush=True)
    runner = NotebookRunner(cfg, table, out_dir, parameters, root, kernel_per_notebook)
    try:
        runner.run([stage for stage in to_run if stage.notebook not in done])
    except KeyboardInterrupt:
        record["interrupted"] = True
    record["stages"] += [{**stage, "params_hash": table[stage["notebook"]].digest(cfg)} for stage in runner.stages]
    record["stages"] = sorted(record["stages"] + others, key=lambda s: s["notebook"])
    record["total_seconds"] = round(time.perf_counter() - started, 1)
    record["data_revisions"] = recorded_data(cfg, root)
    write_json(out_dir / "provenance.json", record)
    from helpers.study.stages import refresh_cards  # torch and the model code: imported once the notebooks ran

    refresh_cards(cfg, root, metrics(out_dir))
    record["complete"] = complete(record)
    last_good = last_report_dir(out_dir)
    if record["complete"]:
        shutil.rmtree(last_good, ignore_errors=True)
    elif (last_good / "index.html").is_file():
        record["last_complete_report"] = str(last_good / "index.html")
    index = write_index(out_dir, record)
    record["index"] = str(index)
    if record.get("interrupted"):
        raise Interrupted(record)
    return record


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C, after its partial report was written; `record` says what it kept."""

    def __init__(self, record: dict):
        super().__init__("interrupted")
        self.record = record


def complete(record: dict) -> bool:
    """Every notebook of the study finished (or was switched off by the profile), none interrupted."""
    return (
        bool(record.get("stages"))
        and not record.get("interrupted")
        and all(s.get("status") in FINISHED for s in record["stages"])
    )


def last_report_dir(out_dir: Path) -> Path:
    """Where the last complete report of reports/<profile> waits while a new run is under way."""
    return out_dir.with_name(out_dir.name + ".last")


def set_aside_complete_report(out_dir: Path) -> None:
    """Before a fresh run: the last complete report moves whole to <profile>.last beside it, where
    it stays until a run completes, so an interrupted or failed run never leaves the reader
    without one. An incomplete report is not kept (one set aside earlier stays)."""
    if complete(_previous(out_dir / "provenance.json")):
        shutil.rmtree(last_report_dir(out_dir), ignore_errors=True)
        out_dir.rename(last_report_dir(out_dir))
        out_dir.mkdir()


def _previous(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _earlier_run(previous: dict, cfg, table: StageTable, to_run: list[Stage]) -> tuple[bool, list[dict]]:
    """(whether the earlier run trained under the same settings, the notebooks to keep: in order,
    up to the first that did not finish or read other parameters). A changed training setting:
    (False, []), the study starts afresh."""
    if not previous:
        return False, []
    old = previous.get("params", {})
    changes = sorted(
        {change for s in table.stages if s.trains for change in changed_keys(s.identity(old), s.identity(cfg))}
    )
    if changes:
        print(
            f"[{cfg.profile}] --resume: training settings changed since the last run ({'; '.join(changes)}); "
            "running the study from the start",
            flush=True,
        )
        return False, []
    by_name = {s["notebook"]: s for s in previous.get("stages", [])}
    kept = []
    for stage in to_run:
        ran = by_name.get(stage.notebook)
        if not ran or ran.get("status") not in FINISHED or ran.get("params_hash") != stage.digest(cfg):
            break
        kept.append({**ran, "kept_from_earlier_run": True})
    return True, kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", help="a profile YAML, e.g. params/demo.yaml")
    parser.add_argument("--only", nargs="*", help="run only notebooks whose names start with these (e.g. 01 04)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a profile key (repeatable)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip notebooks that finished with the same parameters; training continues from checkpoints",
    )
    parser.add_argument(
        "--kernel-per-notebook",
        action="store_true",
        help="a fresh kernel for each notebook (slower: each re-imports torch and transformers)",
    )
    args = parser.parse_args(argv)
    try:
        record = run_study(
            args.profile,
            args.only,
            overrides=parse_overrides(args.set),
            resume=args.resume,
            kernel_per_notebook=args.kernel_per_notebook,
        )
    except (ConfigError, StageTableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        kept = stop.record.get("last_complete_report")
        print(
            f"interrupted: this run's finished notebooks are in {Path(stop.record['index']).parent}"
            + (f"; the last complete report is kept whole at {kept}" if kept else "")
            + f"; continue with: python -m helpers.run {args.profile} --resume",
            file=sys.stderr,
        )
        return 130
    failed = [s for s in record["stages"] if s["status"] not in FINISHED and not s.get("from_earlier_run")]
    if failed:
        stage = failed[0]
        tail = f"\n  its last output:\n    {stage['last_output'][-300:]}" if stage.get("last_output") else ""
        kept = (
            f"\n  the last complete report is kept whole at {record['last_complete_report']}"
            if record.get("last_complete_report")
            else ""
        )
        print(
            f"error: {stage['notebook']} failed at cell [{stage['cell']}]: {stage['error']}\n"
            f"  executed notebook with the traceback: {Path(record['index']).parent / stage['ipynb']}{tail}{kept}",
            file=sys.stderr,
        )
        return 1
    print(f"report: {record['index']}  ({record['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
