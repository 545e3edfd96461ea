"""sst/runtime.py: the process a run trains in (glibc's memory reuse, seeds, devices)."""

import pytest

from conftest import GLIBC, run_cli

FAULTS_SCRIPT = """
import resource
import torch
from sst import runtime

def faults():  # minor page faults while a 64 MiB tensor is allocated, written and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 << 20)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = min(faults() for _ in range(3))
kept = runtime.keep_freed_memory()
torch.ones(32 << 20)  # 128 MiB from the heap, then free: room for the next 64 MiB blocks
print(default, min(faults() for _ in range(3)), kept)
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_keep_freed_memory_reuses_freed_blocks():
    """After utils.keep_freed_memory a freed 64 MiB block is reused: no page faults the next time."""
    p = run_cli("-c", FAULTS_SCRIPT)
    assert p.returncode == 0, p.stderr
    default, kept, ok = p.stdout.split()
    assert ok == "True"
    assert int(kept) * 4 < int(default), p.stdout
