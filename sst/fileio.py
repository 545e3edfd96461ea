"""Writing files so that nothing finished is lost: atomic and staged writes, O_DIRECT writes, folders.

    with atomic_path(path) as tmp:          # a reader sees the old file or the complete new one
        tmp.write_text(...)
    write_json(path, obj)                   # the same, for JSON
    with staged_path(path) as tmp: ...      # written and fsynced beside `path`; publish(tmp, path) later
    child(folder, name)                     # folder / name, for a name from the command line or a file
    read_regular(path, limit)               # the bytes of a regular file inside its folder, bounded
    with open_regular(path, limit) as fh:   # the same, as an open binary file (checkpoints, .mat)
    with FolderLock(root).acquire(info, conflict): ...   # one kind of writer per result folder

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
import secrets
import shlex
import socket
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from sst.errors import DataError, OutputError, UserError, printable, warn

try:
    import fcntl
except ImportError:  # Windows has no fcntl: writes there always go through the page cache
    fcntl = None

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once, restored at once
_HOST = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname())
_HOLDER = re.compile(r"^[A-Za-z0-9_-]*-\d+-[0-9a-f]{8}\.json$")   # FolderLock's <host>-<pid>-<token>.json
_TEMPORARY = re.compile(r"^\..+~(?P<pid>\d+)-(?P<host>[A-Za-z0-9_-]*)~\w+\.tmp$")  # .<name>~<pid>-<host>~<random>.tmp
NAME_MAX = 255      # bytes in one path component: Linux, macOS and Windows file systems alike
PATH_MAX = 4096     # bytes in a whole path (Linux)


# ----------------------------------------------------------------------------- names and paths


def check_path(path: str | os.PathLike, where: str, error: type[UserError] = UserError) -> Path:
    """`path` as a Path if the file system can take it; else `error` naming `where`: a NUL character, a
    component over NAME_MAX bytes or a path over PATH_MAX bytes would fail later in some os call as a
    traceback ("File name too long"), wherever the path is first used."""
    text = os.fspath(path)
    if "\0" in text:
        raise error(f"{where}: {printable(text)}: a path cannot hold a NUL character")
    try:
        long = next((part for part in Path(text).parts if len(os.fsencode(part)) > NAME_MAX), None)
        total = len(os.fsencode(os.path.abspath(text)))
    except UnicodeEncodeError:
        raise error(f"{where}: {printable(text)}: not a name this system can encode") from None
    if long is not None:
        raise error(f"{where}: a path component of {len(os.fsencode(long))} bytes ({printable(long, 40)}); "
                    f"file systems allow at most {NAME_MAX}")
    if total >= PATH_MAX:
        raise error(f"{where}: a path of {total} bytes ({printable(text, 40)}); this system allows at most "
                    f"{PATH_MAX - 1}")
    return Path(text)


def child(folder: str | os.PathLike, name: str, where: str = "") -> Path:
    """`folder / name` for a name read from the command line or a file (a run name, a file name from a
    record): UserError naming `where` unless `name` is one plain component (no separator, not . or
    .., no NUL, at most NAME_MAX bytes), so that the path can never leave `folder`."""
    prefix = f"{where}: " if where else ""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or os.sep in name \
            or (os.altsep and os.altsep in name) or "\0" in name:
        raise UserError(f"{prefix}{printable(repr(name))}: not a plain file name inside {folder}")
    check_path(name, f"{prefix}{folder}")
    return Path(folder) / name


class NotRegular(ValueError):
    """A file of a received folder that is not a plain file of bounded size: a symbolic link, FIFO, device or
    folder where a file belongs, or more bytes than its kind can need. A ValueError, so readers that set
    aside what they cannot parse set it aside as damaged too (renaming a link renames the link itself)."""


# Opening a file of a received folder: never through a link, and at once even if it is a FIFO with no writer.
_RECEIVED = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_KINDS = ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISLNK, "a symbolic link"))


def _kind_of(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "something other than a file or folder")


@contextmanager
def open_regular(path: str | os.PathLike, limit: int) -> Iterator[Any]:
    """`path` opened for binary reading if it is a regular file of at most `limit` bytes, the link itself
    never followed: NotRegular says what it is otherwise (OSError for permissions and the like).

    O_NOFOLLOW refuses a symbolic link as the last component; O_NONBLOCK makes opening a FIFO return at
    once instead of waiting for a writer (the file is then refused by its type, before any read).
    """
    try:
        fd = os.open(path, _RECEIVED)
    except OSError as e:
        if e.errno == errno.ELOOP or (e.errno == errno.EMLINK and os.path.islink(path)):  # EMLINK: FreeBSD
            raise NotRegular("a symbolic link, which is never followed out of its folder") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(f"{_kind_of(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise NotRegular(f"{st.st_size} bytes, more than the {limit} this kind of file can need")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of `path` if it is a regular file of at most `limit` bytes (see open_regular); a file
    that grows past `limit` while it is read is refused the same way."""
    with open_regular(path, limit) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise NotRegular(f"more than the {limit} bytes this kind of file can need")
    return data


JSON_LIMIT = 16 * 2**20     # a run record with 10,000 epochs of history is under 3 MB


def read_json(path: str | os.PathLike, limit: int = JSON_LIMIT) -> Any:
    """JSON from a regular file of at most `limit` bytes (ValueError, NotRegular included, if it is not)."""
    return json.loads(read_regular(path, limit).decode("utf-8"))


def real_folder(path: str | os.PathLike, where: str) -> Path:
    """`path`, a part of a received folder (runs/, checkpoints/, .lock/, a session's folder), unless it is a
    symbolic link, FIFO, device or socket: then OutputError naming it, so that nothing is read or written
    through it outside the folder. A plain file in its place is left to the writer's own error."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):     # not there (a file above it is the writer's error to name)
        return path
    except OSError as e:
        raise DataError(f"{where}: {path}: cannot be read ({e.strerror or e})") from None
    if not stat.S_ISDIR(st.st_mode) and not stat.S_ISREG(st.st_mode):    # a file in the way: the writer names it
        raise OutputError(f"{where}: {path} is {_kind_of(st.st_mode)}, not a folder; nothing is read or written through it "
                          f"(replace it with a folder, or remove it)")
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether the two paths name one file: the same path, a symbolic or a hard link to it."""
    try:
        return os.path.samefile(a, b)
    except OSError:     # one of them does not exist (yet): the same only if they resolve to one path
        return Path(a).resolve() == Path(b).resolve()


def refuse_overwriting(output: str | os.PathLike, flag: str, inputs: list) -> None:
    """UserError if the file to write, `output` (given with `flag`), is one of the `inputs` [(flag, path)]
    under any spelling or link: an atomic rename onto it would lose the input, not read it."""
    same = next(((name, p) for name, p in inputs if p is not None and same_file(output, p)), None)
    if same is not None:
        raise UserError(f"{flag} {output}: that is the {same[0]} file {same[1]} (the same file); "
                        f"write it under another name")


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


# ----------------------------------------------------------------------------- one kind of writer per folder


class FolderLock:
    """Which processes write a folder (a result folder): compatible ones share it, others are refused.

        with FolderLock(root).acquire({"keys": [...], "runs": [...]}, conflict):   # conflict(holder) -> why not, or None
            ...                             # train, summarize

    Under `folder/.lock/`: `guard`, locked (flock, exclusive) for the few milliseconds a process reads or
    changes the holders, and one `<host>-<pid>-<token>.json` per holder: its `info`, its process id,
    host and command line, locked by the holder for as long as it holds the folder. The kernel releases
    flock locks when a process ends, however it ends (SIGKILL, a crash), so a holder file nobody has
    locked is a dead process's, and is removed. On a file system without locks (some network file
    systems) or without fcntl (Windows), the folder is used unguarded, with one warning line.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder) / ".lock"
        self.fd: int | None = None
        self.path: Path | None = None

    def holders(self) -> list[dict]:
        """The live holders' info (each with pid, host, command, since); removes dead holders' files.
        Call with the guard held. Only files named as this class names them (`_HOLDER`) and regular are
        read, and only they are ever removed: whatever else a received `.lock/` holds is left alone."""
        out = []
        for path in list_folder(self.folder, "*.json"):
            if not _HOLDER.match(path.name):
                continue
            try:
                fd = os.open(path, _RECEIVED)
            except OSError:     # gone, a symbolic link (ELOOP): not a holder
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:     # locked: its holder is alive
                    try:
                        info = json.loads(os.pread(fd, 1 << 16, 0).decode("utf-8"))
                    except (ValueError, UnicodeDecodeError):
                        info = {}
                    out.append(info if isinstance(info, dict) else {})
                else:       # nobody holds it: left by a process that has ended
                    try:
                        path.unlink(missing_ok=True)
                    except OSError:     # a folder we may only read (a check): left for a writer to remove
                        pass
            finally:
                os.close(fd)
        return out

    def check(self, conflict: Callable[[dict], str | None]) -> None:
        """OutputError as `acquire` would raise it, without holding the folder or creating anything (a
        command can be refused before it reads the folder, and leave it as it was)."""
        real_folder(self.folder, "the result folder's lock")
        if fcntl is not None and (self.folder / "guard").is_file():
            self.acquire(None, conflict)

    def acquire(self, info: dict | None, conflict: Callable[[dict], str | None],
                required: str | None = None) -> "FolderLock":
        """Hold the folder, unless `conflict(holder)` says why not for one live holder: then OutputError
        with that reason, nothing changed. Returns self (a context manager that releases it). `info`
        None: only check (see `check`). Where the folder cannot be locked, a warning, or with `required`
        (what needs the lock) an OutputError saying so."""
        if fcntl is None:
            return self._unguarded("this system has no fcntl", required)
        make_folder(real_folder(self.folder, "the result folder's lock"))
        try:    # a check only reads: it works in a folder it may not write to, and creates nothing
            guard = os.open(self.folder / "guard", (os.O_RDWR | os.O_CREAT if info is not None else os.O_RDONLY)
                            | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0), 0o666 & ~_UMASK)
        except OSError as e:
            raise OutputError(f"{self.folder}: cannot lock the folder ({write_failure(self.folder, e)})") from None
        try:
            try:
                fcntl.flock(guard, fcntl.LOCK_EX)
            except OSError as e:    # ENOLCK, EOPNOTSUPP: a file system without locks
                return self._unguarded(e.strerror or str(e), required) if info is not None else self
            for holder in self.holders():
                problem = conflict(holder)
                if problem is not None:
                    raise OutputError(problem)
            if info is None:
                return self
            me = {**info, "pid": os.getpid(), "host": socket.gethostname(),
                  "command": shlex.join([os.path.basename(sys.executable), *sys.argv]),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
            path = self.folder / f"{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.json"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666 & ~_UMASK)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, json.dumps(me).encode("utf-8"))
            self.fd, self.path = fd, path
        except OSError as e:
            raise OutputError(f"{self.folder}: cannot lock the folder ({write_failure(self.folder, e)})") from None
        finally:
            os.close(guard)     # releases the guard
        return self

    def _unguarded(self, why: str, required: str | None = None) -> "FolderLock":
        if required:
            raise OutputError(f"{self.folder.parent}: cannot lock the folder ({why}), which {required}")
        warn(f"{self.folder.parent}: cannot lock the folder ({why}); a concurrent run.py of another "
             f"configuration on it would not be refused")
        return self

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = self.path = None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
