"""Checkpoints and partial states as files a user may have received: read without running any code of theirs,
bounded, checked, and those of earlier versions converted.

    state = read_safely(path)          # torch.load(weights_only=True): tensors, dicts, lists, text, numbers
    checkpoint = load_checkpoint(path) # a run's best checkpoint, read so and checked (schemas.CHECKPOINT)
    python -m sst.results.checkpoints --convert results/SEED/checkpoints/*.pt   # earlier versions, as tensors

Before torch.load sees a file, it must be a regular file (no link, FIFO or device) of at most CHECKPOINT_LIMIT
bytes, a zip archive as torch.save writes it (members stored, not compressed, unpacking to at most
CHECKPOINT_LIMIT bytes), whose pickle names only what this project's checkpoints hold (read, not run). After
it, no tensor may declare more than TENSOR_LIMIT bytes, and a best checkpoint's weights and statistics must be
finite numbers. A checkpoint of an earlier version holds its normalisation statistics as NumPy arrays, which
the safe loader refuses; read_earlier reads each as the bytes its pickle gives (NumPy's own unpickling never
runs), and --convert rewrites it as tensors. NotLoaded says why a file was not loaded, refusal() turns that
into the one line a user reads. The model of a checkpoint is sst.models.trained's.
"""
from __future__ import annotations

import _compat_pickle
import argparse
import errno
import math
import pickletools
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from sst import cli, fileio, schemas
from sst.errors import DataError, UserError, printable

# What a checkpoint of an earlier version holds beyond what torch's safe loader takes: NumPy arrays
# (its normalisation statistics). `--convert` allows exactly these, and nothing that can run code.
NUMPY_ARRAY_GLOBALS = ("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
                       "numpy.ndarray", "numpy.dtype")
# What torch.save names in the files this project writes: tensors (their storages, one per element type), the
# ordered dicts of state dicts, and bytes (pickle protocol 2 writes them as _codecs.encode). torch's safe loader
# takes more, some of which allocate whatever the file asks before anything could be checked
# (builtins.bytearray(2**34), torch.FloatTensor(2**34)): a file naming anything else is not ours.
TORCH_GLOBALS = ("torch._utils._rebuild_tensor_v2", "collections.OrderedDict", "_codecs.encode",
                 *(f"torch.{t}Storage" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short",
                                                 "Char", "Byte", "Bool")))
# Bytes a checkpoint or partial state may hold, on disk and unpacked, and any one tensor may declare. SEED.ini's
# network has 1.58 M parameters: its best checkpoint takes 6 MiB, its partial state 24 MiB (the weights, Adam's
# two moments and the best weights so far). The largest network measured, depth 64 and growth rate 64 in both
# streams, has 27.5 M parameters: 105 MiB, and a 420 MiB partial state. 512 MiB takes that (17 times SEED.ini's
# network) and refuses, unread, the file that asks for more (a 49 KB file declaring a 16 GiB array).
CHECKPOINT_LIMIT = 512 * 2**20
TENSOR_LIMIT = CHECKPOINT_LIMIT
CONVERT = "python -m sst.results.checkpoints --convert"


class NotLoaded(Exception):
    """Why read_safely could not load a file: `kind` is "unreadable" (the file system refused: permissions,
    a folder), "earlier" (written by an earlier version: NumPy arrays), "unsafe" (objects whose loading
    would run code) or "damaged" (truncated, not a torch file, a link or FIFO, more than a checkpoint can
    need); the message says what was found."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


def read_safely(path: str | Path) -> object:
    """torch.load(path, weights_only=True) on the CPU: tensors, dicts, lists, str, int, float, bool and None
    only, so that no code inside the file runs, and within CHECKPOINT_LIMIT (the file is checked before it is
    unpickled: see the module's docstring). NotLoaded says why a file was not loaded."""
    with _opened(path) as (fh, names):
        others = names - set(TORCH_GLOBALS)
        if others:
            raise _named(fh, others)
        try:
            state = torch.load(fh, map_location="cpu", weights_only=True)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM, errno.EISDIR, errno.EIO):
                raise NotLoaded("unreadable", e.strerror or str(e)) from None
            raise NotLoaded("damaged", _first_line(e)) from None
        except Exception as e:      # truncated, or tensors that do not fit their storages: fails inside torch
            raise NotLoaded("damaged", _first_line(e)) from None
    problem = _oversized(state)
    if problem:
        raise NotLoaded("damaged", problem)
    return state


@contextmanager
def _opened(path: str | Path) -> Iterator[tuple[Any, set[str]]]:
    """(the open file, the Python objects its pickle names) of a checkpoint that passed the checks made before
    unpickling: a regular file of at most CHECKPOINT_LIMIT bytes, a zip archive of stored members (torch.save
    compresses none; a DEFLATE member of 0.5 MB can inflate to gigabytes) declaring at most CHECKPOINT_LIMIT
    bytes in all, each name once. The names are read from the pickle's opcodes, nothing unpickled."""
    try:
        with fileio.open_regular(path, CHECKPOINT_LIMIT) as fh:
            names = _pickle_names(_pickle_of(fh))
            fh.seek(0)
            yield fh, names
    except fileio.NotRegular as e:
        raise NotLoaded("damaged", str(e)) from None
    except OSError as e:    # there, but not ours to read: not damage, and not to be redone or deleted
        raise NotLoaded("unreadable", e.strerror or str(e)) from None


def _pickle_of(fh) -> bytes:
    """The data.pkl member of a torch zip archive, once its directory has been checked (see _opened)."""
    try:
        archive = zipfile.ZipFile(fh)       # reads the central directory only; closing it leaves `fh` open
        members = archive.infolist()
        total = sum(m.file_size for m in members)
        names = [m.filename for m in members]
        packed = next((m for m in members if m.compress_type != zipfile.ZIP_STORED or m.compress_size != m.file_size),
                      None)
        if packed is not None:
            raise NotLoaded("damaged", f"member {printable(packed.filename, 60)} is compressed (method "
                                       f"{packed.compress_type}); torch.save stores its members as they are")
        if total > CHECKPOINT_LIMIT:
            raise NotLoaded("damaged", f"its members unpack to {total} bytes, more than the {CHECKPOINT_LIMIT} a "
                                       f"checkpoint can need")
        if len(set(names)) != len(names) or not members or members[0].header_offset != 0:
            # what torch's own zip reader would see could differ from what was checked here
            raise NotLoaded("damaged", "a member named twice, or bytes before the first member")
        record = f"{names[0].split('/')[0]}/data.pkl" if names else "data.pkl"    # torch's: the first member's folder
        return archive.read(record)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, EOFError, ValueError) as e:
        raise NotLoaded("damaged", f"not a zip archive as torch.save writes it ({_first_line(e)})") from None


def _pickle_names(pickled: bytes) -> set[str]:
    """The Python objects a pickle names ("module.name"), read from its opcodes without unpickling it."""
    names = set()
    try:
        for op, arg, _ in pickletools.genops(pickled):
            if op.name == "GLOBAL":     # "module name", in Python 2's names under protocol 2 (__builtin__), as pickle maps them
                module, name = arg.split(" ", 1)
                module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
                names.add(f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}")
            elif op.name in ("STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"):   # names torch.save never writes so
                names.add(f"(a {op.name} opcode)")
    except Exception as e:      # cut short or not a pickle
        raise NotLoaded("damaged", f"data.pkl: {_first_line(e)}") from None
    return names


def _named(fh, others: set[str]) -> NotLoaded:
    """Why a file naming `others` (beyond TORCH_GLOBALS) is not loaded: "earlier" if they are NumPy's arrays,
    "unsafe" if torch's safe loader would refuse some (their loading could run code), else "damaged"."""
    def shown(names):
        names = sorted(names)
        return ", ".join(printable(g, 60) for g in names[:3]) + (", ..." if len(names) > 3 else "")

    if others <= set(NUMPY_ARRAY_GLOBALS):
        return NotLoaded("earlier", shown(others))
    try:
        unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(fh)) - set(NUMPY_ARRAY_GLOBALS)
    except AttributeError:      # torch before 2.5 cannot say: whatever is not ours counts as unsafe
        unsafe = others - set(NUMPY_ARRAY_GLOBALS)
    except Exception:
        unsafe = set()
    if unsafe:
        return NotLoaded("unsafe", shown(unsafe))
    return NotLoaded("damaged", f"it holds {shown(others)}, which no checkpoint of this project holds")


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {printable((str(e).splitlines() or [''])[0], 80)}"


def _tensors(value) -> Iterator[tuple[str, torch.Tensor]]:
    """(where, tensor) for every tensor inside `value` (dicts, lists and tuples, at any depth; iteratively, as a
    file may nest deeper than Python's recursion allows)."""
    stack = [("", value)]
    while stack:
        where, v = stack.pop()
        if torch.is_tensor(v):
            yield where, v
        elif isinstance(v, dict):
            stack.extend((f"{where}/{printable(k, 40)}" if where else printable(k, 40), x) for k, x in v.items())
        elif isinstance(v, (list, tuple)):
            stack.extend((f"{where}[{i}]", x) for i, x in enumerate(v))


def _oversized(value) -> str | None:
    """What declares more than TENSOR_LIMIT bytes in a loaded file (a tensor viewing a small storage with stride
    0 can), or None."""
    for where, t in _tensors(value):
        size = t.numel() * t.element_size()
        if size > TENSOR_LIMIT:
            return (f"{where}: a tensor of shape {tuple(t.shape)} declares {size} bytes, more than the {TENSOR_LIMIT} a "
                    f"checkpoint can need")
    return None


def _not_finite(checkpoint: dict) -> str | None:
    """The first weight or statistic of a best checkpoint that holds NaN or Inf values, said for a message; None."""
    for group in ("model", "normalization"):
        for name, t in checkpoint[group].items():
            if torch.is_tensor(t) and (t.is_floating_point() or t.is_complex()):
                bad = t.numel() - int(torch.isfinite(t).sum())
                if bad:
                    return f"{group} tensor {printable(name, 60)}: {bad} NaN/Inf values (expected finite numbers)"
    return None


def checkpoint_problem(checkpoint: object) -> str | None:
    """What is wrong with a loaded best checkpoint: a field missing or of the wrong type (schemas.CHECKPOINT and,
    where present, schemas.CHECKPOINT_FIELDS), a NaN or Inf weight or statistic; None if nothing."""
    return (schemas.check(checkpoint, schemas.CHECKPOINT) or schemas.check_present(checkpoint, schemas.CHECKPOINT_FIELDS)
            or _not_finite(checkpoint))


def load_checkpoint(path: str | Path) -> dict:
    """A run's best checkpoint (model, config, run, subject, session, epoch, normalization), checked, read
    without running any code of its own (read_safely); UserError naming the file if it is missing,
    unreadable (permissions: never called damage), written by an earlier version, unsafe or damaged (NaN or Inf
    weights and statistics included)."""
    path = Path(path)
    try:
        path.lstat()
    except FileNotFoundError:
        record = path.parent.parent / "runs" / f"{path.stem}.json"
        if record.is_file():
            raise UserError(f"{path}: checkpoint not found, although the run finished ({record}); it was "
                            f"deleted: delete {record.name} too and rerun run.py to redo the run") from None
        raise UserError(f"{path}: checkpoint not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the checkpoint ({e.strerror or e}); check its permissions") from None
    try:
        checkpoint = read_safely(path)
    except NotLoaded as e:
        if e.kind != "earlier":
            raise DataError(refusal(path, e, "the run")) from None
        checkpoint = read_earlier(path)     # its NumPy arrays, numbers only: as safe as the safe loader
    problem = checkpoint_problem(checkpoint)
    if problem:
        raise DataError(f"{path}: damaged checkpoint ({problem}); delete it and its runs/*.json to redo the run")
    return checkpoint


def refusal(path: Path, e: NotLoaded, redo: str) -> str:
    """The one line that says why a checkpoint or partial state was not loaded (NotLoaded) and what to do."""
    if e.kind == "unreadable":
        return f"{path}: cannot read the file ({e}); check its permissions (it is not damaged, nothing was changed)"
    if e.kind == "earlier":
        return (f"{path}: written by an earlier version of this project (NumPy arrays: {e}), which the safe loader "
                f"refuses; convert it with `{CONVERT} {path}` (runs no code), or delete it and its runs/*.json "
                f"to redo {redo}")
    if e.kind == "unsafe":
        return (f"{path}: holds objects whose loading would run code ({e}): not a file this project writes; "
                f"refused: a checkpoint holds tensors, numbers and text only")
    return f"{path}: not a readable checkpoint ({e}); delete it and its runs/*.json to redo {redo}"


def as_arrays(stats: dict) -> dict[str, np.ndarray]:
    """Normalisation statistics as NumPy arrays, whether stored as tensors (this version) or arrays."""
    return {k: v.numpy() if torch.is_tensor(v) else np.asarray(v) for k, v in stats.items()}


def as_tensors(stats: dict) -> dict[str, torch.Tensor]:
    """Normalisation statistics as CPU tensors, as checkpoints store them (the safe loader takes tensors)."""
    return {k: torch.as_tensor(np.asarray(v)) for k, v in stats.items()}


def read_earlier(path: Path) -> dict:
    """A checkpoint of an earlier version (its statistics as NumPy arrays), checked as read_safely checks a file,
    read with the safe loader plus NumPy's array pickles taken apart by _EarlierArray (numbers only, each array
    exactly the bytes its pickle gives: nothing in the file can run or read memory it does not hold), its arrays
    returned as tensors; DataError if it holds anything else."""
    try:
        with _opened(path) as (fh, names):
            others = names - set(TORCH_GLOBALS) - set(NUMPY_ARRAY_GLOBALS)
            if others:
                raise _named(fh, others)
            try:
                with torch.serialization.safe_globals(_EARLIER_GLOBALS):
                    checkpoint = _without_arrays(torch.load(fh, map_location="cpu", weights_only=True))
            except DataError as e:
                raise DataError(f"{path}: {e}") from None
            except Exception as e:
                raise DataError(f"{path}: not a readable checkpoint of an earlier version ({_first_line(e)})") from None
    except NotLoaded as e:
        raise DataError(refusal(path, e, "the run")) from None
    problem = _oversized(checkpoint)
    if problem:
        raise DataError(f"{path}: not a readable checkpoint ({problem}); delete it and its runs/*.json to redo the run")
    return checkpoint


class _EarlierDType:
    """A NumPy dtype as NumPy pickles one, `numpy.dtype("f4", False, True)` then its state, taken only for plain
    numbers: booleans, integers and floats of at most 8 bytes (no objects, text, records or sub-arrays)."""

    dtype: np.dtype | None = None

    def __init__(self, spec, align=False, copy=False):
        if not (isinstance(spec, str) and re.fullmatch(r"[biuf][1248]", spec)):
            raise ValueError(f"an array of dtype {printable(repr(spec), 40)}, where numbers were expected")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state):
        # NumPy writes (3, byte order, None, None, None, -1, -1, 0) for a plain number type
        if not (isinstance(state, tuple) and len(state) == 8 and state[1] in ("<", ">", "|", "=")
                and state[2:] == (None, None, None, -1, -1, 0) and self.dtype is not None):
            raise ValueError("a NumPy dtype that is not a plain number type")
        self.dtype = self.dtype.newbyteorder(state[1]) if state[1] in "<>" else self.dtype


class _EarlierArray:
    """A NumPy array as NumPy pickles one: `_reconstruct(ndarray, (0,), b"b")`, then its state (version, shape,
    dtype, Fortran order, data bytes). NumPy's own unpickling is never called: `_reconstruct` makes an array of
    whatever shape it is given, uninitialised, before any data (a file can declare 16 GiB and give none), and an
    object dtype given a short list reads past it. Here the shape must come with exactly its bytes."""

    value: np.ndarray | None = None     # once its state gave the data

    def __init__(self):
        pass

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise ValueError("a NumPy array whose pickle is not one NumPy writes")
        version, shape, dtype, fortran, data = state
        if not (version == 1 and isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)
                and isinstance(dtype, _EarlierDType) and dtype.dtype is not None and isinstance(fortran, bool)
                and isinstance(data, bytes)):
            raise ValueError("a NumPy array whose pickle is not one NumPy writes")
        declared = math.prod(shape) * dtype.dtype.itemsize
        if declared != len(data):
            raise ValueError(f"a NumPy array of shape {shape} {dtype.dtype} declares {declared} bytes but holds "
                             f"{len(data)}")
        self.value = np.frombuffer(data, dtype.dtype).reshape(shape, order="F" if fortran else "C")


def _reconstruct(subtype, shape, typecode):
    """NumPy's _reconstruct as NumPy's pickles call it, (ndarray, (0,), b"b"): an empty array its state fills."""
    if subtype is not _EarlierArray or shape != (0,) or typecode not in (b"b", "b"):
        raise ValueError(f"a NumPy array declared as {printable(repr(shape), 40)} before its data; NumPy writes (0,)")
    return _EarlierArray()


_EARLIER_GLOBALS = [(_reconstruct, NUMPY_ARRAY_GLOBALS[0]), (_reconstruct, NUMPY_ARRAY_GLOBALS[1]),
                    (_EarlierArray, "numpy.ndarray"), (_EarlierDType, "numpy.dtype")]


def _without_arrays(value):
    """`value` with every NumPy array (at any depth of dicts, lists and tuples) a tensor; DataError for an array
    declared without its data, or a dtype standing alone."""
    if isinstance(value, _EarlierArray):
        if value.value is None:
            raise DataError("an array declared without its data; not converted")
        a = value.value     # read-only, over the pickle's bytes: copied, in the machine's byte order
        return torch.from_numpy(np.array(a, dtype=a.dtype.newbyteorder("="), order="C", copy=True))
    if isinstance(value, _EarlierDType):
        raise DataError("a NumPy dtype where numbers were expected; not converted")
    if isinstance(value, dict):
        return {k: _without_arrays(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_without_arrays(v) for v in value)
    return value


# ----------------------------------------------------------------------------- converting earlier checkpoints


def convert(path: Path) -> str:
    """Rewrite a checkpoint of an earlier version in place, its NumPy arrays as tensors, so that the safe
    loader takes it; returns what was done. Reads it as read_earlier does, so converting runs no code of the
    file's either, and checks it as load_checkpoint does (NaN or Inf weights or statistics are damage); UserError
    otherwise."""
    try:
        checkpoint, done = read_safely(path), None
    except NotLoaded as e:
        if e.kind != "earlier":
            raise DataError(refusal(path, e, "the run")) from None
        checkpoint, done = read_earlier(path), f"{path}: converted (its NumPy arrays stored as tensors)"
    problem = checkpoint_problem(checkpoint)
    if problem:
        raise DataError(f"{path}: damaged checkpoint ({problem}); not converted")
    if done is None:
        return f"{path}: loads safely already, left as it is"
    with fileio.atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert checkpoints written by earlier versions (NumPy arrays) "
                                                 "so that they load without running code.")
    parser.add_argument("--convert", nargs="+", type=Path, metavar="FILE.pt", required=True,
                        help="checkpoints/<run>.pt files to rewrite in place (each atomically)")
    args = cli.refuse_empty_values(parser).parse_args(argv)
    for path in args.convert:
        print(convert(path))
    return 0


if __name__ == "__main__":
    cli.cli_main(main)
