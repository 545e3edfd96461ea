"""sst/cli.py: the command lines' shared behaviour (one error line, Ctrl-C, workers that die with their parent)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, read_line, started

CHAIN = ("import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', sys.argv[1]]); "
         "print(child.pid, flush=True); child.wait()")


WORKER = ("import os, sys, time; sys.path.insert(0, {root!r}); from sst import cli; {disable}"
          "cli.die_with_parent(os.getppid()); print('ready', flush=True); time.sleep(600)")


def gone(pid: int, wait: float = 30.0) -> bool:
    """Whether process `pid` has ended (a zombie counts as ended), waiting up to `wait` seconds."""
    deadline = time.time() + wait
    while True:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        if time.time() >= deadline:
            return False
        time.sleep(0.1)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("how", ["prctl", "watchdog"])
def test_a_worker_ends_when_its_parent_is_killed(how):
    """cli.die_with_parent, as each --jobs worker calls it: the parent killed with SIGKILL, the worker
    ends too, by the kernel's signal (Linux) or by its watchdog thread alone (elsewhere)."""
    disable = "cli.ctypes = None; " if how == "watchdog" else ""      # as where there is no prctl
    worker = None
    with started("-c", CHAIN, WORKER.format(root=str(ROOT), disable=disable), stdout=subprocess.PIPE,
                 text=True) as parent:
        try:
            worker = int(read_line(parent.stdout))
            assert read_line(parent.stdout) == "ready\n"
            parent.send_signal(signal.SIGKILL)
            parent.wait(timeout=60)
            assert gone(worker)
        finally:
            if worker is not None and not gone(worker, wait=0):     # a failed test leaves no sleeper behind
                os.kill(worker, signal.SIGKILL)
