"""One process or several (torchrun / accelerate launch): who is main, who waits, how the global
batch is split, and how a failure in one process is reported once.

accelerate decides CPU multi-process (gloo) only when asked for the CPU explicitly; without it,
two CPU processes under torchrun each believe they are alone. Every place in this package that
asks "am I the main process?" goes through state() so that the answer is right on CPU and GPU.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import traceback

import torch


class BatchPlanError(ValueError):
    """A global batch that cannot be split evenly over the processes."""


def state():
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def launched() -> bool:
    """True under torchrun / accelerate launch (even before the process group exists)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    return state().num_processes if launched() else 1


def rank() -> int:
    return state().process_index if launched() else 0


def is_main() -> bool:
    return rank() == 0


@contextlib.contextmanager
def main_first():
    """The main process runs the block first (building caches, writing data); the others wait
    and then run it, finding its results on disk."""
    if not launched():
        yield
        return
    with state().main_process_first():
        yield


def barrier() -> None:
    if launched():
        state().wait_for_everyone()


def batch_plan(global_batch: int, processes: int, per_device_max: int = 0) -> tuple[int, int]:
    """(rows per device per forward pass, gradient-accumulation steps) that make up global_batch.

    The global batch must divide evenly over the processes; when a device's share exceeds
    per_device_max (0 = no limit), it is taken in the fewest equal micro-batches that fit."""
    if global_batch % processes:
        lower, upper = global_batch - global_batch % processes, global_batch + processes - global_batch % processes
        raise BatchPlanError(f"batch_size {global_batch} does not divide over {processes} processes; "
                             f"use {lower or upper} or {upper} (the batch is global: every process takes an equal share)")
    share = global_batch // processes
    if not per_device_max or share <= per_device_max:
        return share, 1
    steps = next(s for s in range(math.ceil(share / per_device_max), share + 1) if share % s == 0)
    return share // steps, steps


PEER_FAILURE_MARKERS = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
                        "NCCL communicator was aborted", "ProcessGroupGloo", "Signal 15", "Signal 2")


def _is_peer_failure(error: BaseException) -> bool:
    from torch.distributed.elastic.multiprocessing.api import SignalException

    if isinstance(error, SignalException):
        return True
    text = f"{type(error).__name__}: {error}"
    return type(error).__name__ == "DistBackendError" or any(m in text for m in PEER_FAILURE_MARKERS)


def report_failure(error: BaseException) -> None:
    """Print a process's failure for a person reading a multi-process log: the process that
    failed first prints its traceback; a process stopped only because a peer died (closed
    connection, torchrun's SIGTERM) prints one line instead of a second, misleading traceback."""
    if not launched():
        traceback.print_exception(error)
        return
    who = f"[rank {os.environ.get('RANK', '?')}/{os.environ.get('WORLD_SIZE', '?')}]"
    if _is_peer_failure(error):
        print(f"{who} stopped: another process failed (its error is printed above)", file=sys.stderr, flush=True)
    else:
        lines = traceback.format_exception(error)
        print(f"{who} error: {type(error).__name__}: {error}\n{who} traceback:\n{''.join(lines)}", file=sys.stderr,
              flush=True)
