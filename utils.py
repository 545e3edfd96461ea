"""Shared plumbing: the command-line wrapper, seeding, devices, plugin files, small helpers.

The INI file is config.py's, the user-facing errors are errors.py's (also importable from here, as
before), writing files is fileio.py's. Errors a user can cause (bad path, bad file, bad INI value) are
`UserError`s: the command-line entry points catch them with `cli_main` and print one line, exit code 1,
no traceback.
"""
from __future__ import annotations

import argparse
import ast
import ctypes
import ctypes.util
import hashlib
import importlib.util
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from config import DEVICE_NAME, Config, add_set_argument, load_config  # noqa: F401  (utils.load_config, as before)
from errors import ConfigError, DataError, OutputError, UserError, printable  # noqa: F401  (utils.UserError and kin, as before)
from fileio import check_path

if TYPE_CHECKING:
    import torch

_PLUGINS: dict[Path, object] = {}       # imported plugin files (one import per process)

INTERRUPTED = "interrupted: finished work is kept; rerun the same command to resume"


def cli_main(main: Callable[[list[str] | None], Any]) -> None:
    """Run a command-line `main(argv)`; turn a UserError into one stderr line and exit 1, Ctrl-C into one
    line and exit 130."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:   # undo a script's guard for its imports (run.py)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = main(None)
    except UserError as e:
        print("error: " + printable(str(e).replace("\n", " "), limit=None), file=sys.stderr)  # one line, whatever it holds
        sys.exit(1)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    sys.exit(int(code or 0))


def refuse_empty_values(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make every option of `parser` (and of its sub-commands) that takes a value refuse an empty or blank
    one with a UserError naming the option: `--shard "$UNSET"` must not silently mean "no shard".

    The check runs as the option's type, before its own conversion; a UserError (not argparse's
    ValueError) leaves parse_args as it is, so the command prints one `error:` line and exits 1.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                refuse_empty_values(sub)
        elif action.nargs != 0 and action.option_strings:
            action.type = _non_empty(action.type, "/".join(action.option_strings))
    return parser


def _non_empty(convert: Callable[[str], Any] | None, flag: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if not text.strip():
            raise UserError(f"{flag}: empty value {text!r} (an unset shell variable?); give a value or leave the "
                            f"option out")
        value = convert(text) if convert is not None else text
        if isinstance(value, Path):
            check_path(value, flag)
        return value

    parse.__name__ = getattr(convert, "__name__", "str")     # argparse names the type in its own messages
    return parse


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


# ----------------------------------------------------------------------------- worker processes


PR_SET_PDEATHSIG = 1    # <linux/prctl.h>


def die_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """End this (worker) process as soon as process `parent` is gone, however it ended (SIGKILL included).

    Linux: the kernel sends SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG). Everywhere, as a
    backstop: a daemon thread polls the parent's id every `poll_s` seconds and exits when it changes
    (the worker was re-parented to init or a subreaper). A parent already gone when this is called is
    caught by the first check. A worker killed this way loses at most its current epoch: every file
    it writes is written atomically, and its temporary files are removed by the next run.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError, TypeError):
        pass    # not Linux: the watchdog alone

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(poll_s)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


@contextmanager
def children_ignore_ctrl_c() -> Iterator[None]:
    """Start child processes inside this block with Ctrl-C ignored from their first instruction.

    Ctrl-C reaches every process of the terminal's group; a spawned worker still importing its modules
    would die with a traceback. SIG_IGN is the one disposition that survives exec (and Python keeps it),
    so the children start ignoring SIGINT. This thread blocks SIGINT meanwhile, so that a Ctrl-C now
    waits and is raised once the block ends (Linux keeps a blocked signal pending even while it is
    ignored); another thread of this process that does not block it (torch's) would drop it, so keep
    the block short: run.WorkerProcess holds it while one process starts (milliseconds).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    blocking = hasattr(signal, "pthread_sigmask")
    if blocking:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if blocking:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


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
