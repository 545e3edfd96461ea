"""Shared plumbing: the command-line wrapper, seeding, devices, plugin files, small helpers.

The INI file is config.py's, the user-facing errors are errors.py's (also importable from here, as
before), writing files is fileio.py's. Errors a user can cause (bad path, bad file, bad INI value) are
`UserError`s: the command-line entry points catch them with `cli_main` and print one line, exit code 1,
no traceback.
"""
from __future__ import annotations

import ast
import ctypes
import ctypes.util
import hashlib
import importlib.util
import random
import re
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from config import DEVICE_NAME, Config, add_set_argument, load_config  # noqa: F401  (utils.load_config, as before)
from errors import ConfigError, DataError, OutputError, UserError  # noqa: F401  (utils.UserError and kin, as before)

if TYPE_CHECKING:
    import torch

_PLUGINS: dict[Path, object] = {}       # imported plugin files (one import per process)

def cli_main(main: Callable[[list[str] | None], Any]) -> None:
    """Run a command-line `main(argv)`; turn a UserError into one stderr line and exit 1."""
    try:
        code = main(None)
    except UserError as e:
        print("error: " + str(e).replace("\n", " "), file=sys.stderr)  # one line, whatever the message holds
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    sys.exit(int(code or 0))


# ----------------------------------------------------------------------------- misc


def int_list(text: str) -> list[int]:
    """'1,2,10' -> [1, 2, 10] for --subjects / --sessions. A UserError, not argparse's ValueError,
    so a bad value ends as one `error:` line with exit code 1 like every other user error."""
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UserError(f"expected comma-separated integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise UserError(f"expected comma-separated positive integers, got {text!r}")
    return values


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


def import_plugins(paths, where: str = "[model] plugins") -> None:
    """Import Python files ([model] plugins) so that the variants they register can be built by name.

    Each file is imported once per process, as a module named after its path. A file that is missing or
    fails on import is one ConfigError naming `where`, the file and, for an error inside it, the line.
    """
    for path in map(Path, paths):
        if path in _PLUGINS:
            continue
        if not path.is_file():
            raise ConfigError(f"{where}: {path}: no such file")
        name = "sst_plugin_" + re.sub(r"\W", "_", str(path))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module      # as for any import: dataclasses and pickling inside it find it
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            line = getattr(e, "lineno", None) if isinstance(e, SyntaxError) else next(
                (tb.lineno for tb in traceback.extract_tb(e.__traceback__) if Path(tb.filename) == path), None)
            at = f", line {line}" if line else ""
            raise ConfigError(f"{where}: {path}{at}: the plugin failed on import ({type(e).__name__}: "
                                    f"{(str(e).splitlines() or [''])[0][:200]})") from None
        _PLUGINS[path] = module


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
