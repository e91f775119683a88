"""Training stages in several processes, started from one: `torchrun -m helpers.train` as a
subprocess, so that a notebook (or a plain `python -m helpers.train` with processes > 1) keeps
orchestrating while training scales over GPUs (nccl) or CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers.profiles import write_resolved


class LaunchError(RuntimeError):
    """A training subprocess failed; the message carries the failing process's error."""


def resolved_profile(cfg, name: str) -> Path:
    """The resolved config as a profile the subprocess loads: one source of values for every process."""
    return write_resolved(cfg, cfg.run_dir / f"{name}.yaml")


def command(profile: Path, processes: int, train_args: list[str], log_dir: Path) -> list[str]:
    # --standalone: a private rendezvous on a free local port, so two runs never collide. --log-dir:
    # where torchrun keeps each process's error file (TORCHELASTIC_ERROR_FILE).
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        f"--log-dir={log_dir}",
        "-m",
        "helpers.train",
        str(profile),
        *train_args,
    ]


def first_failure(log_dir: Path) -> str | None:
    """The earliest error any process recorded (distributed.report_failure writes it with
    torchelastic's ErrorHandler; peers stopped by that failure record none): 'rank R: Type: message'.
    torchrun keeps one file per local rank under <log_dir>/<run>/attempt_<n>/<local rank>/error.json."""
    recorded = []
    for path in Path(log_dir).glob("*/attempt_*/*/error.json"):
        message = json.loads(path.read_text()).get("message", {})
        if isinstance(message, dict):
            recorded.append(
                (int(message.get("extraInfo", {}).get("timestamp", 0)), path.parent.name, message.get("message", ""))
            )
    if not recorded:
        return None
    _, rank, text = min(recorded, key=lambda item: (item[0], int(item[1]) if item[1].isdigit() else 0))
    return f"rank {rank}: {text}"


def run(cfg, train_args: list[str], name: str) -> None:
    """Run helpers.train under torchrun with cfg.processes processes, echoing its output; on
    failure raise with the first error a process recorded."""
    import shutil

    log_dir = cfg.run_dir / "torchrun" / name
    shutil.rmtree(log_dir, ignore_errors=True)  # error files of an earlier launch are not this one's
    cmd = command(resolved_profile(cfg, name), cfg.processes, train_args, log_dir)
    print(f"launching {cfg.processes} processes: {' '.join(cmd[1:])}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
    if proc.returncode:
        first = first_failure(log_dir) or "no process recorded an error; see the output above"
        raise LaunchError(f"training under torchrun failed (exit {proc.returncode}): {first}")


def train_stage(cfg, stage: str) -> None:
    run(cfg, ["--stage", stage], f"launch_{stage}")
