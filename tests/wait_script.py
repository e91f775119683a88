"""Run under torchrun by test_real_runs: the main process works for `sleep` seconds inside the
main-first block while the others wait, with the profile's ddp_timeout. Each process prints the
CPU seconds it spent in the block (a waiting process must sleep, not spin)."""

import sys
import time

from helpers.config import load_config
from helpers.training import distributed

timeout, sleep = int(sys.argv[1]), float(sys.argv[2])
distributed.configure(load_config(sys.argv[3], {"ddp_timeout": timeout}).ddp_timeout)
try:
    cpu = time.process_time()
    with distributed.main_first("the main process's test work"):
        if distributed.is_main():
            time.sleep(sleep)
    print(f"rank {distributed.rank()} done, cpu {time.process_time() - cpu:.2f} s", flush=True)
except BaseException as error:  # noqa: BLE001
    distributed.report_failure(error)
    sys.exit(1)
