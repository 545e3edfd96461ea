"""The process a run trains in: seeds, the device, glibc's memory reuse, and the code's git commit.

    set_seed(42)                                   # Python's, NumPy's and torch's generators
    device = resolve_device("auto")                # CUDA when there is one, else the CPU
    code_digest(source)                            # what code does, not how it is worded (fastcpu, provenance)
"""
from __future__ import annotations

import ast
import ctypes
import ctypes.util
import hashlib
import random
import subprocess
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sst.config import DEVICE_NAME
from sst.errors import ConfigError

if TYPE_CHECKING:
    import torch


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (CPU and CUDA)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str, where: str = "[training] device") -> "torch.device":
    """'auto' -> CUDA when available, else CPU; an explicit CUDA device must exist (ConfigError naming `where`)."""
    import torch

    if not DEVICE_NAME.fullmatch(name):
        raise ConfigError(f"{where}: expected auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            found = f"{count} CUDA device(s) (cuda:0 .. cuda:{count - 1})" if count else "no CUDA device"
            raise ConfigError(f"{where}: {name!r} asked for, but this machine has {found} (use auto or cpu)")
    return torch.device(name)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse: True if set, False without glibc's mallopt.

    By default glibc maps large blocks afresh (mmap; from 128 KiB, a threshold that rises with use
    up to 32 MiB) and gives them back when they are freed (munmap), and trims freed memory at the
    top of its heap; a training step's activations are freed every step, so they are page-faulted
    in again every step (on this project's 2-core VM, SEED.ini, batch 64: 24,000-34,000 faults,
    93-134 MiB, 6-19% of the step time; bench/README.md). With M_MMAP_MAX = 0 every block comes from
    the heap, and with M_TRIM_THRESHOLD at its maximum freed memory stays in the process: the next
    step reuses it. The price: the process keeps its peak memory until it exits. Process-wide;
    run.py calls it when it trains on the CPU, bench/train.py on request.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return bool(libc.mallopt(-4, 0)) and bool(libc.mallopt(-1, 2 ** 31 - 1))   # -4 M_MMAP_MAX, -1 M_TRIM_THRESHOLD
    except (OSError, AttributeError, TypeError):
        return False


def git_commit() -> str | None:
    """The code's git commit (with '+dirty' if the tree has changes), or None outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


def code_digest(source: str, filename: str = "<source>") -> str:
    """A short hash of Python code that ignores comments, docstrings and layout (its ast, unparsed):
    what the code does, not how it is worded. SyntaxError if it is not Python."""
    tree = ast.parse(textwrap.dedent(source), filename=filename)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()[:16]
