"""A training job's own GPUs on a machine with several: Snakemake counts how many GPUs the jobs
running at once hold (the Snakefile's local_gpus, which make sets to the machine's count) but hands
out no device, so without this every training would run on the first GPU. Each job takes free GPUs
under a lock file per GPU and sees only those (CUDA_VISIBLE_DEVICES); the locks go with the process.

Where a job already has its GPUs named (a cluster's allocation, or the user's own
CUDA_VISIBLE_DEVICES) or the machine lists none, nothing changes.

As a command, it takes the count and the command to run on that many:
    python gpus.py 2 python -m study.train ...
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAIT_S = 0.5


def machine_gpus() -> int:
    """The GPUs nvidia-smi lists (0 without it)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return sum(line.startswith("GPU ") for line in listed.stdout.splitlines())


def take(count: int, total: int, folder: Path) -> list[int]:
    """`count` of the GPUs 0..total-1 that no other job holds, locked until this process (or the
    program it becomes) exits; waits while fewer are free, which happens only when jobs were
    started beside the engine's count."""
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o1777)  # the GPUs are the machine's: every user's jobs lock here, as in /tmp
    waited = False
    while True:
        held = {}
        for gpu in range(total):
            # Read-only is enough to lock, so another user's lock file serves too.
            lock = os.open(folder / f"gpu{gpu}.lock", os.O_RDONLY | os.O_CREAT, 0o444)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock)
                continue
            held[gpu] = lock
            if len(held) == count:
                for fd in held.values():
                    os.set_inheritable(fd, True)  # kept through exec: the training holds them
                return sorted(held)
        for fd in held.values():
            os.close(fd)
        if not waited:
            print(f"waiting for {count} free GPU(s) of {total}", file=sys.stderr, flush=True)
            waited = True
        time.sleep(WAIT_S)


def pin(count: int) -> str | None:
    """Set CUDA_VISIBLE_DEVICES to `count` GPUs taken for this process; None when the job's GPUs
    are named already or the machine has none."""
    if count < 1 or "CUDA_VISIBLE_DEVICES" in os.environ or (total := machine_gpus()) == 0:
        return None
    if count > total:
        raise SystemExit(
            f"a training asks for {count} GPUs and this machine has {total}: set processes to at most {total}"
        )
    gpus = take(count, total, Path(tempfile.gettempdir()) / "ct2-gpus")
    # nvidia-smi's numbering; CUDA's own order puts the fastest first.
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    print(f"training on GPU {os.environ['CUDA_VISIBLE_DEVICES']} of {total}", file=sys.stderr, flush=True)
    return os.environ["CUDA_VISIBLE_DEVICES"]


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    pin(int(sys.argv[1]))
    os.execvp(sys.argv[2], sys.argv[2:])
