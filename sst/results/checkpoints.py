"""Checkpoints and partial states as files a user may have received: read without running any code of theirs,
checked, and those of earlier versions converted.

    state = read_safely(path)          # torch.load(weights_only=True): tensors, dicts, lists, text, numbers
    checkpoint = load_checkpoint(path) # a run's best checkpoint, read so and checked (schemas.CHECKPOINT)
    python -m sst.results.checkpoints --convert results/SEED/checkpoints/*.pt   # earlier versions, as tensors

A checkpoint of an earlier version holds its normalisation statistics as NumPy arrays, which the safe loader
refuses; read_earlier reads it with numeric NumPy arrays allowed and nothing else, and --convert rewrites it
as tensors (reading it runs no code either). NotLoaded says why a file was not loaded, refusal() turns that
into the one line a user reads. The model of a checkpoint is sst.models.trained's.
"""
from __future__ import annotations

import argparse
import errno
import pickle
import re
from pathlib import Path

import numpy as np
import torch

from sst import cli, fileio, schemas
from sst.errors import DataError, UserError, printable

# What a checkpoint of an earlier version holds beyond what torch's safe loader takes: NumPy arrays
# (its normalisation statistics). `--convert` allows exactly these, and nothing that can run code.
NUMPY_ARRAY_GLOBALS = ("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
                       "numpy.ndarray", "numpy.dtype")
CONVERT = "python -m sst.results.checkpoints --convert"


class NotLoaded(Exception):
    """Why read_safely could not load a file: `kind` is "unreadable" (the file system refused: permissions,
    a folder), "earlier" (written by an earlier version: NumPy arrays), "unsafe" (objects whose loading
    would run code) or "damaged" (truncated, not a torch file); the message says what was found."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


def read_safely(path: str | Path) -> object:
    """torch.load(path, weights_only=True) on the CPU: tensors, dicts, lists, str, int, float, bool and None
    only, so that no code inside the file runs. NotLoaded says why a file was not loaded."""
    try:
        fh = open(path, "rb")
    except OSError as e:    # there, but not ours to read: not damage, and not to be redone or deleted
        raise NotLoaded("unreadable", e.strerror or str(e)) from None
    with fh:
        try:
            return torch.load(fh, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            unsafe = _unsafe_globals(path, e)
            if not unsafe:
                raise NotLoaded("damaged", _first_line(e)) from None
            shown = ", ".join(printable(g, 60) for g in unsafe[:3]) + (", ..." if len(unsafe) > 3 else "")
            kind = "earlier" if set(unsafe) <= set(NUMPY_ARRAY_GLOBALS) else "unsafe"
            raise NotLoaded(kind, shown) from None
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM, errno.EISDIR, errno.EIO):
                raise NotLoaded("unreadable", e.strerror or str(e)) from None
            raise NotLoaded("damaged", _first_line(e)) from None
        except Exception as e:      # truncated or not a torch file: fails anywhere inside torch's reader
            raise NotLoaded("damaged", _first_line(e)) from None


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {printable((str(e).splitlines() or [''])[0], 80)}"


def _unsafe_globals(path: str | Path, error: Exception) -> list[str]:
    """The Python objects a torch file names that the safe loader does not allow (read, never run); torch
    before 2.5 has no function for it, but names the first one in its error."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except AttributeError:
        return re.findall(r"Unsupported global: GLOBAL ([\w.]+)", str(error))[:1]
    except Exception:   # not a zip checkpoint at all, or damaged: nothing to name
        return []


def load_checkpoint(path: str | Path) -> dict:
    """A run's best checkpoint (model, config, run, subject, session, epoch, normalization), checked, read
    without running any code of its own (read_safely); UserError naming the file if it is missing,
    unreadable (permissions: never called damage), written by an earlier version, unsafe or damaged."""
    path = Path(path)
    try:
        path.stat()
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
    problem = schemas.check(checkpoint, schemas.CHECKPOINT)
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
    """A checkpoint of an earlier version (its statistics as NumPy arrays), read with the safe loader plus
    NumPy's reconstruction of numeric arrays only (no object arrays: nothing in the file can run), its
    arrays returned as tensors; DataError if it holds anything else."""
    reconstruct = (getattr(np, "_core", None) or np.core).multiarray._reconstruct    # NumPy 2 renamed core _core
    allowed = [np.ndarray, np.dtype, *((reconstruct, name) for name in NUMPY_ARRAY_GLOBALS[:2]),
               *{type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64")}]  # numbers only
    try:
        with torch.serialization.safe_globals(allowed), open(path, "rb") as fh:
            return _without_arrays(torch.load(fh, map_location="cpu", weights_only=True))
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except Exception as e:
        raise DataError(f"{path}: not a readable checkpoint of an earlier version ({_first_line(e)})") from None


def _without_arrays(value):
    """`value` with every NumPy array (at any depth of dicts and lists) a tensor; DataError for object arrays."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise DataError(f"an array of {value.dtype} where numbers were expected; not converted")
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, dict):
        return {k: _without_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_arrays(v) for v in value]
    return value


# ----------------------------------------------------------------------------- converting earlier checkpoints


def convert(path: Path) -> str:
    """Rewrite a checkpoint of an earlier version in place, its NumPy arrays as tensors, so that the safe
    loader takes it; returns what was done. Reads it with the safe loader plus NumPy's array
    reconstruction only, so converting runs no code of the file's either; UserError otherwise."""
    try:
        read_safely(path)
        return f"{path}: loads safely already, left as it is"
    except NotLoaded as e:
        if e.kind != "earlier":
            raise DataError(refusal(path, e, "the run")) from None
    checkpoint = read_earlier(path)
    problem = schemas.check(checkpoint, schemas.CHECKPOINT)
    if problem:
        raise DataError(f"{path}: damaged checkpoint ({problem}); not converted")
    with fileio.atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return f"{path}: converted (its NumPy arrays stored as tensors)"


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
