"""Training stages in several processes, started from one: `torchrun -m helpers.train` as a
subprocess, so that a notebook (or a plain `python -m helpers.train` with processes > 1) keeps
orchestrating while training scales over GPUs (nccl) or CPU processes (gloo)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml


class LaunchError(RuntimeError):
    """A training subprocess failed; the message carries the failing process's error."""


def resolved_profile(cfg, name: str) -> Path:
    """The resolved config (file values, overrides, notebook parameters) as a YAML the
    subprocess loads: one source of values for every process."""
    from helpers.files import written_whole

    path = cfg.run_dir / f"{name}.yaml"
    with written_whole(path) as partial:
        partial.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


def command(profile: Path, processes: int, train_args: list[str]) -> list[str]:
    # --standalone: a private rendezvous on a free local port, so two runs never collide.
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "helpers.train", str(profile), *train_args]


def run(cfg, train_args: list[str], name: str) -> None:
    """Run helpers.train under torchrun with cfg.processes processes, echoing its output; on
    failure raise with the failing process's error line."""
    cmd = command(resolved_profile(cfg, name), cfg.processes, train_args)
    print(f"launching {cfg.processes} processes: {' '.join(cmd[1:])}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    errors = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            if line.startswith("[rank") and " error: " in line:
                errors.append(line.strip())
    if proc.returncode:
        first = errors[0] if errors else "see the output above"
        raise LaunchError(f"training under torchrun failed (exit {proc.returncode}): {first}")


def train_stage(cfg, stage: str) -> None:
    run(cfg, ["--stage", stage], f"launch_{stage}")
