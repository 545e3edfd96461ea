"""The command lines' shared behaviour: one `error:` line for a user's mistake, Ctrl-C and SIGTERM as one line,
empty option values refused, --subjects/--sessions lists, and worker processes that never outlive or interrupt their
parent.

    if __name__ == "__main__":
        cli.cli_main(main)        # UserError -> one stderr line, exit 1; Ctrl-C -> one line, exit 130; SIGTERM: 143

Errors a user can cause (bad path, bad file, bad INI value) are `errors.UserError`s; tracebacks are for bugs.

Signals: Ctrl-C (SIGINT) and SIGTERM (`kill`, a scheduler's time limit, scancel) end a command the same way: one
line, every `finally` run (locks released, --jobs workers terminated), finished work kept. A signal the process
was started ignoring stays ignored: a shell script's `cmd &` (`nohup cmd &` included) starts a command with
SIGINT ignored, the user's word that the terminal's Ctrl-C is not for it; its --jobs workers ignore SIGINT
anyway, and SIGTERM still stops it and them. Workers take their dispositions from `worker_signals`, not from
what they inherited.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from sst.errors import UserError, printable
from sst.fileio import check_path

INTERRUPTED = "interrupted: finished work is kept; rerun the same command to resume"


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt: a BaseException, so that no
    `except Exception` stops it on its way out through every `finally` and `with`."""


def _terminated(signum, frame) -> None:
    raise Terminated


def cli_main(main: Callable[[list[str] | None], Any]) -> None:
    """Run a command-line `main(argv)`; turn a UserError into one stderr line and exit 1, Ctrl-C into one
    line and exit 130, SIGTERM into the same line and exit 143 (128 + the signal's number, as a shell says)."""
    handle_stop_signals()
    try:
        code = main(None)
    except UserError as e:
        print("error: " + printable(str(e).replace("\n", " "), limit=None), file=sys.stderr)  # one line, whatever it holds
        sys.exit(1)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(143)
    sys.exit(int(code or 0))


def handle_stop_signals() -> None:
    """Ctrl-C raises KeyboardInterrupt, SIGTERM raises Terminated, in the main thread; either, if this process
    was started ignoring it (SIGINT after a script's `cmd &`), stays ignored. Also replaces a script's guard for its
    imports (run.py's)."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _terminated)


@contextmanager
def stops_deferred() -> Iterator[None]:
    """Ctrl-C or SIGTERM that comes inside the block is raised when the block ends (KeyboardInterrupt,
    Terminated), not in the middle of it: what the block builds (run.py's worker Pool, its threads and
    processes) is then whole, and the code around it can stop it. Python runs signal handlers in the main
    thread only, so this holds whatever other threads exist. A signal ignored (or not handled by Python)
    stays as it is."""
    got: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    deferred = [s for s, h in previous.items() if callable(h)] \
        if threading.current_thread() is threading.main_thread() else []
    for s in deferred:
        signal.signal(s, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        for s in deferred:
            signal.signal(s, previous[s])
        if got:
            raise KeyboardInterrupt if got[0] == signal.SIGINT else Terminated


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


def worker_signals() -> None:
    """A worker process's dispositions, whatever it inherited: Ctrl-C ignored (it is the parent's, which then
    stops every worker; so too after a script's `cmd &`, where the parent ignores it), SIGTERM at its default
    (the parent's Pool.terminate stops it so, even when the parent itself was started ignoring SIGTERM)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
