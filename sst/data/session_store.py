"""The preprocessed sessions on disk: one folder per subject-session, its manifest, and reading it back.

    sessions = load_preprocessed(cfg, subjects=[1], sessions=[2])   # memory-mapped, checked against cfg
    session.de, session.eeg, session.label, session.trial          # electrode-level arrays (Preprocess.py)
    session.source("de")                                            # a stream's source array by name

Preprocess.py writes these folders (its docstring lists the files); run.py, figures.py and the
Python API read them through this module only.
"""
from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sst import fileio, schemas
from sst.config import SOURCE_LENGTHS, Config, data_overrides
from sst.data import readers
from sst.data.electrodes import CHANNELS
from sst.errors import DataError, printable
from sst.fileio import list_folder

MANIFEST = "manifest.json"
MANIFEST_LIMIT = 1 << 20    # bytes: a session's manifest takes about 2 kB
NPY_HEADER_LIMIT = 1 << 16  # bytes before an .npy file's data: np.save writes 128 (format 1.0 allows at most 65,600)
NUMBER_DTYPES = ("float32", "float64", "int64", "int32")
# A session has at most one window a second of its file's EEG (MAX_FILE_S, SEED's 1-s windows the shortest):
# 7,200, twice the 3,394 of a SEED session (SEED-IV's have at most 851 4-s windows)
MAX_WINDOWS = readers.MAX_FILE_S
ARRAYS = ("spectral", "temporal", "de", "eeg", "label", "trial")  # .npy files of a session, in write order
SESSION_FOLDER = re.compile(r"^sub(\d+)_ses(\d+)$")

# ----------------------------------------------------------------------------- folders and manifests


def session_folder(cfg: Config, subject: int, session: int) -> Path:
    """<preprocessed_root>/sub01_ses1: where one subject-session's arrays and manifest live."""
    return cfg.path.preprocessed_root / f"sub{subject:02d}_ses{session}"


def manifest_problem(folder: Path) -> tuple[dict | None, str | None]:
    """(the session's manifest, None) or (None, what is wrong with it: missing, unreadable, a symbolic link or
    other than a regular file, a field missing or of the wrong type; schemas.MANIFEST). A damaged manifest marks
    its session as not preprocessed: Preprocess.py rebuilds it. A session folder that is a symbolic link is an
    OutputError naming it: nothing is read or written through it (fileio.real_folder)."""
    if folder.is_symlink():     # (a file in its place is the writer's to report: Preprocess.py cannot create it)
        fileio.real_folder(folder, "preprocessed session")
    path = folder / MANIFEST
    try:
        manifest = fileio.read_json(path, MANIFEST_LIMIT)
    except FileNotFoundError:
        return None, "missing"
    except fileio.NotRegular as e:
        return None, f"unreadable ({e})"
    except (OSError, ValueError) as e:
        return None, f"unreadable ({getattr(e, 'strerror', None) or type(e).__name__})"
    problem = schemas.check(manifest, schemas.MANIFEST)
    return (None, problem) if problem else (manifest, None)


def read_manifest(folder: Path) -> dict | None:
    return manifest_problem(folder)[0]


def manifest_matches_folder(folder: Path, manifest: dict) -> bool:
    """The manifest's subject and session are those its folder's name says (sub01_ses2: 1, 2)."""
    match = SESSION_FOLDER.match(folder.name)
    return bool(match) and (manifest.get("subject"), manifest.get("session")) == (int(match[1]), int(match[2]))


# ----------------------------------------------------------------------------- reading


def expected_arrays(cfg: Config, n: int) -> dict[str, tuple[tuple, str]]:
    """{name: (shape, dtype)} of the arrays run.py reads from a session of `n` windows built with cfg's [data]
    (Preprocess.py's docstring lists them); the maps, spectral and temporal, are only checked against their
    files' headers: nothing reads them back."""
    channels = len(CHANNELS)
    return {**{source: ((n, channels, getattr(cfg.data, key)), "float32") for source, key in SOURCE_LENGTHS.items()},
            "label": ((n,), "int64"), "trial": ((n,), "int64")}


def arrays_problem(manifest: dict, cfg: Config) -> str | None:
    """What is wrong with a manifest's `arrays` (schemas.MANIFEST checked already) for cfg, or None: a name that is
    not one of ARRAYS (names become file names), more than MAX_WINDOWS windows, an array run.py reads of another
    shape or dtype than cfg's [data] makes, or one that is not of numbers."""
    n = manifest["n_samples"]
    if n > MAX_WINDOWS:
        return f"n_samples: {n} windows, more than the {MAX_WINDOWS} a session of these datasets can hold"
    expected = expected_arrays(cfg, n)
    for name, meta in manifest["arrays"].items():
        if name not in ARRAYS:
            return f"arrays: {printable(repr(name), 40)} is not one of a session's arrays ({', '.join(ARRAYS)})"
        shape, dtype = tuple(meta["shape"]), meta["dtype"]
        if name in expected and (shape, dtype) != expected[name]:
            return f"arrays: {name} of shape {shape} {printable(dtype, 20)}, expected {expected[name][0]} {expected[name][1]}"
        if not shape or shape[0] != n or dtype not in NUMBER_DTYPES:
            return f"arrays: {name} of shape {shape} {printable(dtype, 20)}, expected {n} windows of numbers"
    return None


def _mapped(path: Path, meta: dict) -> np.ndarray:
    """A session's .npy file memory-mapped read-only, once it is known to be a regular file (not a link, FIFO or
    device) holding the header and the bytes `meta` (its manifest's shape and dtype) declares and no more;
    ValueError (fileio.NotRegular among them) otherwise."""
    shape, dtype = tuple(meta["shape"]), np.dtype(meta["dtype"])
    with fileio.open_regular(path, NPY_HEADER_LIMIT + math.prod(shape) * dtype.itemsize) as fh:
        version = np.lib.format.read_magic(fh)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f".npy format version {version}, expected 1.0 or 2.0 (np.save's)")
        stored, fortran, stored_dtype = read_header[version](fh)
        if stored != shape or stored_dtype != dtype:
            raise ValueError(f"shape {stored} {stored_dtype}, manifest says {shape} {dtype}")
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype)
        return np.memmap(fh, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=fh.tell())


@dataclass(frozen=True, eq=False)
class Session:
    """One preprocessed subject-session; arrays are memory-mapped read-only."""

    subject: int
    session: int
    de: np.ndarray  # (N, 62, specInput_length) float32, DE per electrode and band, unnormalised
    eeg: np.ndarray | None  # (N, 62, temInput_length) float32, resampled raw segment, uV; None without raw EEG
    label: np.ndarray  # (N,) int64, 0-based class (the dataset entry's class_names)
    trial: np.ndarray  # (N,) int64, 1-based trial number
    path: Path  # the session folder (spectral.npy, temporal.npy, manifest.json)

    def source(self, name: str) -> np.ndarray | None:
        """A stream's source array by name (model.register_stream's source): "de" or "eeg"."""
        if name not in ("de", "eeg"):
            raise ValueError(f"{name!r}: expected a source array name, de or eeg")
        return getattr(self, name)


def preprocess_command(cfg: Config) -> str:
    """The Preprocess.py command that builds cfg's sessions: its INI file and the --set values that
    change what is built (config.data_overrides) or where (path.dataset_root, path.preprocessed_root)."""
    data = data_overrides(cfg)
    sets = [o for o in cfg.overrides if o in data or o.startswith(("path.dataset_root=", "path.preprocessed_root="))]
    ini = shlex.quote(str(cfg.source)) if cfg.source else "<ini file>"
    return " ".join([f"python Preprocess.py -c {ini}", *(f"--set {shlex.quote(o)}" for o in sets)])


def load_preprocessed(cfg: Config, subjects=None, sessions=None) -> list[Session]:
    """The preprocessed sessions (default: all on disk), sorted by (subject, session).

    DataError, naming the Preprocess.py command to run, if a requested one is missing or was built
    with a different [data] config.
    """
    root = cfg.path.preprocessed_root
    command = preprocess_command(cfg)
    on_disk = {}
    for folder in list_folder(root, "sub*_ses*", cfg.where("path", "preprocessed_root")):
        match = SESSION_FOLDER.match(folder.name)
        if match and (folder / MANIFEST).is_file():
            on_disk[int(match.group(1)), int(match.group(2))] = folder
    subjects = subjects or sorted({s for s, _ in on_disk})
    if not subjects:
        raise DataError(f"{root}: no preprocessed sessions; run `{command}`")
    out = []
    for subject in subjects:
        wanted = sessions or sorted(k for s, k in on_disk if s == subject)
        if not wanted:
            raise DataError(f"{root}: subject {subject} not preprocessed; run `{command} --subjects {subject}`")
        for session in wanted:
            if (subject, session) not in on_disk:
                raise DataError(f"{root}: sub{subject:02d}_ses{session} not preprocessed; "
                                f"run `{command} --subjects {subject} --sessions {session}`")
            out.append(open_session(on_disk[subject, session], cfg, command))
    return out


def open_session(folder: Path, cfg: Config, command: str) -> Session:
    manifest, problem = manifest_problem(folder)
    if manifest is None:
        subject, session = (int(n) for n in SESSION_FOLDER.match(folder.name).groups())
        raise DataError(f"{folder / MANIFEST}: {problem}, so {folder.name} counts as not preprocessed; run "
                        f"`{command} --subjects {subject} --sessions {session}`")
    if not manifest_matches_folder(folder, manifest):
        raise DataError(f"{folder / MANIFEST}: says subject {manifest.get('subject')}, session {manifest.get('session')}, "
                        f"but its folder is {folder.name}; rerun `{command} --force` for that subject and session")
    expected = cfg.to_dict()["data"]
    changed = [k for k in expected if manifest.get("data", {}).get(k) != expected[k]]
    if changed:
        k = changed[0]
        raise DataError(f"{folder}: preprocessed with [data] {k} = {manifest.get('data', {}).get(k)!r}, but "
                        f"{cfg.origin('data', k)} has {expected[k]!r}; rerun `{command} --force`")
    problem = arrays_problem(manifest, cfg)
    if problem:
        raise DataError(f"{folder / MANIFEST}: {problem}; rerun `{command} --force`")
    arrays = {}
    for name, meta in manifest["arrays"].items():
        path = folder / f"{name}.npy"
        try:
            arrays[name] = _mapped(path, meta)
        except (OSError, ValueError) as e:      # fileio.NotRegular included: a link, a FIFO, more than declared
            raise DataError(f"{path}: unreadable ({e}); rerun `{command} --force`") from None
    return Session(subject=manifest["subject"], session=manifest["session"], de=arrays["de"], eeg=arrays.get("eeg"),
                   label=arrays["label"], trial=arrays["trial"], path=folder)
