"""The preprocessed sessions on disk: one folder per subject-session, its manifest, and reading it back.

    sessions = load_preprocessed(cfg, subjects=[1], sessions=[2])   # memory-mapped, checked against cfg
    session.de, session.eeg, session.label, session.trial          # electrode-level arrays (Preprocess.py)
    session.source("de")                                            # a stream's source array by name

Preprocess.py writes these folders (its docstring lists the files); run.py, figures.py and the
Python API read them through this module only.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sst import schemas
from sst.config import Config, data_overrides
from sst.errors import DataError
from sst.fileio import list_folder

MANIFEST = "manifest.json"
ARRAYS = ("spectral", "temporal", "de", "eeg", "label", "trial")  # .npy files of a session, in write order
SESSION_FOLDER = re.compile(r"^sub(\d+)_ses(\d+)$")

# ----------------------------------------------------------------------------- folders and manifests


def session_folder(cfg: Config, subject: int, session: int) -> Path:
    """<preprocessed_root>/sub01_ses1: where one subject-session's arrays and manifest live."""
    return cfg.path.preprocessed_root / f"sub{subject:02d}_ses{session}"


def manifest_problem(folder: Path) -> tuple[dict | None, str | None]:
    """(the session's manifest, None) or (None, what is wrong with it: missing, unreadable, a field
    missing or of the wrong type; schemas.MANIFEST). A damaged manifest marks its session as not
    preprocessed: Preprocess.py rebuilds it."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "missing"
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
    arrays = {}
    for name, meta in manifest["arrays"].items():
        path = folder / f"{name}.npy"
        try:
            arrays[name] = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: unreadable ({e}); rerun `{command} --force`") from None
        if list(arrays[name].shape) != meta["shape"] or str(arrays[name].dtype) != meta["dtype"]:
            raise DataError(f"{path}: shape {arrays[name].shape} {arrays[name].dtype}, manifest says "
                            f"{tuple(meta['shape'])} {meta['dtype']}; rerun `{command} --force`")
    return Session(subject=manifest["subject"], session=manifest["session"], de=arrays["de"], eeg=arrays.get("eeg"),
                   label=arrays["label"], trial=arrays["trial"], path=folder)
