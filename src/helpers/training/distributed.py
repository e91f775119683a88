"""One process or several (torchrun / accelerate launch): who is main, who waits, how the global
batch is split, and how a failure in one process is reported once.

accelerate decides CPU multi-process (gloo) only when asked for the CPU explicitly; without it,
two CPU processes under torchrun each believe they are alone. Every place in this package that
asks "am I the main process?" goes through state() so that the answer is right on CPU and GPU.

The process group is created once, with the profile's ddp_timeout (configure() before the first
state()). Data and caches are prepared by every process under file locks, outside any
collective; the one long wait in a collective, for the main process's pseudo-label round, goes
through a gloo group, where a waiting process sleeps in a socket read instead of spinning a core
as an NCCL barrier does.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import traceback
from datetime import timedelta

import torch

_settings = {"timeout": timedelta(seconds=1800)}


class BatchPlanError(ValueError):
    """A global batch that cannot be split evenly over the processes."""


class WaitTimeout(RuntimeError):
    """A process waited longer than ddp_timeout for another."""


def configure(timeout_s: int) -> None:
    """The process-group timeout for this process (the profile's ddp_timeout); call before the first state()."""
    _settings["timeout"] = timedelta(seconds=timeout_s)


def state():
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available(), timeout=_settings["timeout"])


def launched() -> bool:
    """True under torchrun / accelerate launch (even before the process group exists)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    return state().num_processes if launched() else 1


def rank() -> int:
    return state().process_index if launched() else 0


def is_main() -> bool:
    return rank() == 0


def _wait_group():
    """A gloo group over every process (the default group when it is gloo already)."""
    import torch.distributed as dist

    if "wait_group" not in _settings:
        state()
        _settings["wait_group"] = (
            dist.group.WORLD
            if dist.get_backend() == "gloo"
            else dist.new_group(backend="gloo", timeout=_settings["timeout"])
        )
    return _settings["wait_group"]


def wait_for_everyone(what: str) -> None:
    """A barrier over the gloo group; a wait past ddp_timeout raises WaitTimeout naming the key."""
    import torch.distributed as dist

    try:
        dist.barrier(group=_wait_group())
    except Exception as error:  # noqa: BLE001 (gloo raises RuntimeError or DistBackendError)
        if "timed out" in str(error).lower() or "timeout" in str(error).lower():
            seconds = int(_settings["timeout"].total_seconds())
            raise WaitTimeout(
                f"waited more than ddp_timeout ({seconds} s) for {what}; raise ddp_timeout in the "
                "profile (or --set ddp_timeout=...) if that work takes longer"
            ) from error
        raise


@contextlib.contextmanager
def main_first(what: str = "the main process"):
    """The main process runs the block first; the others wait (sleeping, at most ddp_timeout) and
    then run it."""
    if not launched():
        yield
        return
    if not is_main():
        wait_for_everyone(what)
    yield
    if is_main():
        wait_for_everyone(what)


def broadcast(value, what: str):
    """The main process's value, in every process (a Python object over the gloo group)."""
    if not launched():
        return value
    import torch.distributed as dist

    box = [value if is_main() else None]
    try:
        dist.broadcast_object_list(box, src=0, group=_wait_group())
    except Exception as error:  # noqa: BLE001
        if "timeout" in str(error).lower() or "timed out" in str(error).lower():
            raise WaitTimeout(f"waited more than ddp_timeout for {what}; raise ddp_timeout in the profile") from error
        raise
    return box[0]


def barrier() -> None:
    if launched():
        state().wait_for_everyone()


def batch_plan(global_batch: int, processes: int, per_device_max: int = 0) -> tuple[int, int]:
    """(rows per device per forward pass, gradient-accumulation steps) that make up global_batch.

    The global batch must divide evenly over the processes; when a device's share exceeds
    per_device_max (0 = no limit), it is taken in the fewest equal micro-batches that fit."""
    if global_batch % processes:
        lower, upper = global_batch - global_batch % processes, global_batch + processes - global_batch % processes
        raise BatchPlanError(
            f"batch_size {global_batch} does not divide over {processes} processes; "
            f"use {lower or upper} or {upper} (the batch is global: every process takes an equal share)"
        )
    share = global_batch // processes
    if not per_device_max or share <= per_device_max:
        return share, 1
    steps = next(s for s in range(math.ceil(share / per_device_max), share + 1) if share % s == 0)
    return share // steps, steps


PEER_FAILURE_MARKERS = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "NCCL communicator was aborted",
    "ProcessGroupGloo",
    "Signal 15",
    "Signal 2",
)


def _is_peer_failure(error: BaseException) -> bool:
    from torch.distributed.elastic.multiprocessing.api import SignalException

    if isinstance(error, SignalException):
        return True
    if isinstance(error, WaitTimeout):
        return False
    text = f"{type(error).__name__}: {error}"
    return type(error).__name__ == "DistBackendError" or any(m in text for m in PEER_FAILURE_MARKERS)


def report_failure(error: BaseException) -> None:
    """Print a process's failure for a person reading a multi-process log: the main process prints
    its traceback, another process its error in one line with the place it was raised (every
    process prepares the data, so a bad source fails in all of them: one traceback is enough); a
    process stopped only because a peer died (closed connection, torchrun's SIGTERM) prints one
    line instead of a second, misleading traceback."""
    if not launched():
        traceback.print_exception(error)
        return
    who = f"[rank {os.environ.get('RANK', '?')}/{os.environ.get('WORLD_SIZE', '?')}]"
    if _is_peer_failure(error):
        print(f"{who} stopped: another process failed (its error is printed above)", file=sys.stderr, flush=True)
        return
    # torchrun's error file for this process (TORCHELASTIC_ERROR_FILE): torchrun's closing summary names
    # the first failure ("Root Cause") from these, not from the printed lines.
    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    ErrorHandler().record_exception(error)
    if is_main():
        lines = traceback.format_exception(error)
        print(
            f"{who} error: {type(error).__name__}: {error}\n{who} traceback:\n{''.join(lines)}",
            file=sys.stderr,
            flush=True,
        )
    else:
        frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
        where = f" (raised at {frame.filename}:{frame.lineno})" if frame else ""
        print(f"{who} error: {type(error).__name__}: {error}{where}", file=sys.stderr, flush=True)
