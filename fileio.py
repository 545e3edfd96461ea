"""Writing files so that nothing finished is lost: atomic and staged writes, O_DIRECT writes, folders.

    with atomic_path(path) as tmp:          # a reader sees the old file or the complete new one
        tmp.write_text(...)
    write_json(path, obj)                   # the same, for JSON
    with staged_path(path) as tmp: ...      # written and fsynced beside `path`; publish(tmp, path) later

Every failure to write (a file where a folder should be, permissions, a full disk) is one
`OutputError` naming the path and the reason; temporary files left by killed processes are named
after their process and host, so `remove_stale_temporaries` removes only those.
"""
from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # Windows has no fcntl: writes there always go through the page cache
    fcntl = None

import numpy as np

from errors import DataError, OutputError

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once, restored at once
_HOST = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname())
_TEMPORARY = re.compile(r"^\..+~(?P<pid>\d+)-(?P<host>[A-Za-z0-9_-]*)~\w+\.tmp$")  # .<name>~<pid>-<host>~<random>.tmp


def _disk_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (64 << 10)


def write_failure(path: Path, error: BaseException) -> str | None:
    """Why writing `path` failed, for an error line ("no space left on device" when the disk is full),
    or None when `error` is not a write failure (a bug: its traceback is kept)."""
    full = _disk_full(Path(path).parent)
    if isinstance(error, OSError):
        return "no space left on device" if error.errno == errno.ENOSPC or full else (error.strerror or str(error))
    if full:
        return "no space left on device"
    text = str(error)
    if "PytorchStreamWriter" in text or "inline_container" in text:    # torch.save raises RuntimeError
        return (text.splitlines() or [""])[0][:120]
    return None


@contextmanager
def staged_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path` to write; on success it is fsynced (unless not `durable`) and
    left for `publish`, on failure deleted. A write that fails (a file where a folder should be,
    permissions, disk full; OSError, or torch.save's RuntimeError) raises OutputError naming `path` and
    the reason.

    Without fsync a file survives the death of the process that wrote it (the page cache is the kernel's),
    not a power loss or a crash of the machine: right for files rewritten often and cheap to lose, such as a
    run's state after each epoch (docs/guarantees.md).

    The temporary file is named `.<name>~<pid>-<host>~<random>.tmp`; one left behind by a killed
    process is removed by `remove_stale_temporaries`.
    """
    path = Path(path)
    make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}~{os.getpid()}-{_HOST}~", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({write_failure(path, e)})") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes owner-only files; outputs get the usual permissions
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        reason = write_failure(path, e) if isinstance(e, (OSError, RuntimeError)) else None
        if reason is not None:
            raise OutputError(f"{path}: cannot write ({reason})") from None
        raise


def publish(tmp: Path, path: str | os.PathLike) -> None:
    """Rename a staged temporary file onto `path` (atomic: a reader sees the old file or the new one)."""
    try:
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({write_failure(Path(path), e)})") from None


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it onto `path`, else delete it.

    A reader never sees a half-written file: either the old one, or the complete new one. Failures
    are OutputErrors naming `path` and the reason; `durable` False skips the fsync (see `staged_path`).
    """
    with staged_path(path, durable) as tmp:
        yield tmp
    publish(tmp, path)


# Writing around the page cache (O_DIRECT): on the VM this project is measured on, each fresh page of
# page cache costs the host a memory fault, so writing a session's 442 MB of maps through it took
# 0.1-1.2 s from run to run; O_DIRECT from reused buffers writes it at a steady 1.1-1.5 GB/s
# (bench/README.md). The maps are not read back by training (run.py reads the electrode arrays).
BLOCK = 4096  # bytes: O_DIRECT wants buffers, file offsets and lengths in multiples of the device's block


def aligned_empty(shape: tuple, dtype) -> np.ndarray:
    """np.empty whose data starts on a BLOCK boundary (as O_DIRECT writes need)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + BLOCK, dtype=np.uint8)
    start = -raw.ctypes.data % BLOCK
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def direct_writes(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for the open file descriptor; False where the system has no such flag
    or the file system refuses it (then writes go through the page cache, as usual)."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag or fcntl is None:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | flag if on else flags & ~flag)
    except OSError:
        return False
    return on


def _seek_and_write(fd: int, data: memoryview, offset: int) -> int:
    """os.pwrite where there is none (Windows); pwrite_all's writes come from one thread."""
    os.lseek(fd, offset, os.SEEK_SET)
    return os.write(fd, data)


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """Write all of `data` at `offset` of the file (os.pwrite until done). A file system that takes
    O_DIRECT but then refuses a write with EINVAL gets this and later writes through the page cache."""
    while data:
        try:
            written = getattr(os, "pwrite", _seek_and_write)(fd, data, offset)
        except OSError as e:
            if e.errno != errno.EINVAL or not _is_direct(fd):
                raise
            direct_writes(fd, False)
            if _is_direct(fd):      # the flag will not go: the same write would fail again
                raise
            continue
        if written == 0:
            raise OSError(errno.EIO, f"a write of {len(data)} bytes at offset {offset} wrote nothing")
        data, offset = data[written:], offset + written


def _is_direct(fd: int) -> bool:
    return fcntl is not None and bool(fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0))


def list_folder(folder: str | os.PathLike, pattern: str, where: str = "") -> list[Path]:
    """The entries of `folder` whose names match `pattern` (fnmatch), sorted; none if it does not exist.

    A folder that exists but cannot be listed is one DataError naming it (Path.glob would silently
    find nothing there, and finished work would look missing).
    """
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):    # nothing there yet (a file in the way is the writer's error)
        return []
    except OSError as e:
        raise DataError(f"{(where + ': ') if where else ''}{folder}: cannot list the folder ({e.strerror or e})") \
            from None
    return sorted(folder / n for n in names if fnmatch.fnmatch(n, pattern))


def make_folder(path: str | os.PathLike) -> Path:
    """mkdir -p; OutputError naming the folder if it cannot be made (e.g. a file is in the way)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: cannot create the folder ({e.strerror or e})") from None
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files of `atomic_path` in `folder` left by killed processes; returns how many.

    Only files written on this host by a process that no longer exists are touched, so a process
    writing into the same folder at the same time (another --shard) keeps its files.
    """
    removed = 0
    for path in Path(folder).glob(".*.tmp") if Path(folder).is_dir() else ():
        match = _TEMPORARY.match(path.name)
        if match and match["host"] == _HOST and not _process_exists(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only the existence check is made
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:  # not a process id at all
        return False
    return True


def check_output_folder(path: str | os.PathLike, where: str) -> None:
    """Fail early, creating nothing, if `path` cannot become a writable folder.

    Checks `path` or, while it does not exist, its nearest existing parent: that must be a folder
    this process may write into. `where` names the INI key in the message. Later failures (disk
    full) still surface as OutputError from atomic_path.
    """
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{where}: cannot write to {path} ({existing} is a file, not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{where}: cannot write to {path} ({existing} is not writable)")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (indent 2, NumPy scalars and Paths converted)."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=default) + "\n", encoding="utf-8")

