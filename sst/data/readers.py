"""The files of SEED and SEED-IV as distributed: finding the recordings, reading features, raw EEG and labels.

The one place that opens the datasets' files; it asks the dataset's entry (sst.data.datasets) how they are
laid out, and never compares dataset names. Preprocess.py is the entry point that uses it:

    recordings = find_recordings("SEED", "data/SEED")   # [Recording(subject=1, session=1, ...), ...]
    de = read_features(recordings[0].features, "de_LDS")  # {trial: (62, T, 5) float64}
    eeg = read_raw(recordings[0].raw, recordings[0].prefix)  # {trial: (62, N) float64, uV at 200 Hz}
    labels = read_labels("SEED", "data/SEED")             # {session: (15,) int64, 0-based}

Subject, session and trial numbers are parsed from file names, dates and key names, never taken
from positions or lexicographic order. Every problem with the files raises `errors.DataError`
with one line naming the file, the key and what was expected; sizes are checked on the shapes a file
declares before any value is read (at most MAX_TRIAL_S of EEG a variable, MAX_FILE_S a file), and HDF5 values
stored in other files are refused. An oddity that leaves the data usable (a label line given twice, a file
whose date the tables do not know) prints one line starting `warning: ` on stderr naming the files. Nothing
is changed silently.
"""
from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sst.data import datasets
from sst.data.datasets import Dataset
from sst.data.electrodes import BANDS, CHANNELS, SAMPLING_RATE
from sst.errors import DataError, printable
from sst.fileio import NotRegular, list_folder, open_regular

# <subject number or name>_<YYYYMMDD>.mat; anything else (label.mat, readme.txt) is a stray
RECORDING_NAME = re.compile(r"^(\d+|[A-Za-z]+)_(\d{8})\.mat$")
RAW_KEY = re.compile(r"^(.+)_eeg(\d+)$")  # the prefix differs per subject: never hard-code it
LABEL_LINE = re.compile(r"session\s*(\d+)\s*_label\s*=\s*\[([^\]]*)\]")

# ----------------------------------------------------------------------------- recordings


@dataclass(frozen=True)
class Recording:
    """One subject-session: its feature file and raw EEG file (None where that folder is absent).

    `prefix`: the key prefix the raw file must use, for files identified by subject name (else None).
    """

    subject: int
    session: int
    features: Path | None
    raw: Path | None
    prefix: str | None = None


def find_recordings(name: str, root: str | Path) -> list[Recording]:
    """All recordings under a dataset folder as downloaded, sorted by (subject, session).

    Files told apart by date (SEED): session = the date's column in the entry's subject table when all of
    a subject's dates are known (a partial download keeps its session numbers), else the rank of the date
    among that subject's files, said in one warning line naming the files whose date the table lacks. More
    files for a subject than the dataset has sessions (a copy saved under another date) is an error.
    One folder per session (SEED-IV): session = the number of the folder (see _scan_session_folders).
    When both the feature and the raw EEG folder exist they must hold the same recordings.
    """
    dataset = datasets.get(name)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found (set [path] dataset_root in the INI file)")
    features_dir = next((root / f for f in dataset.feature_folders if (root / f).is_dir()), None)
    raw_dir = root / dataset.raw_folder if (root / dataset.raw_folder).is_dir() else None
    if features_dir is None and raw_dir is None:
        expected = " or ".join(f"{f}/" for f in (*dataset.feature_folders, dataset.raw_folder))
        raise DataError(f"{root}: no {expected} inside; expected the {dataset.name} folder as downloaded")
    scan = _scan_session_folders if dataset.session_folders else _scan_dated_files
    features = scan(features_dir, dataset) if features_dir else {}
    raws = scan(raw_dir, dataset) if raw_dir else {}
    if features_dir and raw_dir:
        for have, have_dir, other, other_dir in ((features, features_dir, raws, raw_dir), (raws, raw_dir, features, features_dir)):
            for key in sorted(set(have) - set(other)):
                expected = other_dir / have[key].relative_to(have_dir)
                missing = f"{expected.parent}: session folder missing" if not expected.parent.is_dir() else f"{expected}: missing"
                raise DataError(f"{missing}, but {have[key]} exists (both folders must hold the same recordings)")
    keys = sorted(set(features) | set(raws))

    def prefix(subject: int, raw: Path | None) -> str | None:
        named = raw is not None and not RECORDING_NAME.match(raw.name).group(1).isdigit()
        return dataset.subjects[subject][0] if named else None

    recordings = [Recording(subject=s, session=k, features=features.get((s, k)), raw=raws.get((s, k)),
                            prefix=prefix(s, raws.get((s, k)))) for s, k in keys]
    if not dataset.session_folders:
        _warn_unknown_dates(recordings, dataset)
    return recordings


def _warn_unknown_dates(recordings: list[Recording], dataset: Dataset) -> None:
    """One warning line naming the files whose session is a date rank because the entry's table lacks their date.

    Such a file may be a recording the table does not know, or a copy that took a real session's
    number (1_20131028.mat beside 1_20131027.mat and 1_20131030.mat becomes session 2): the user decides.
    """
    subjects = dataset.subjects
    unknown = [(r, path) for r in recordings if r.subject in subjects for path in (r.features, r.raw)
               if path is not None and RECORDING_NAME.match(path.name).group(2) != subjects[r.subject][1][r.session - 1]]
    if not unknown:
        return
    shown = [f"{path} (subject {r.subject}, made session {r.session}; known dates {', '.join(subjects[r.subject][1])})"
             for r, path in unknown[:3]]
    more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
    print(f"warning: {len(unknown)} {dataset.name} file(s) dated outside the session table of sst/data/datasets.py, "
          f"numbered by date rank "
          f"among their subject's files: {'; '.join(shown)}{more}", file=sys.stderr)


def _recording_files(folder: Path, names: dict[str, int]) -> dict[int, dict[str, Path]]:
    """subject -> {date: path} of the files named <subject>_<YYYYMMDD>.mat, the subject given by its
    number or by its name in `names`; strays are skipped."""
    found: dict[int, dict[str, Path]] = {}
    for path in list_folder(folder, "*"):
        match = RECORDING_NAME.match(path.name)
        if not (match and path.is_file()):
            continue
        who, date = match.groups()
        if who.isdigit():
            subject = int(who)
        elif who.lower() in names:
            subject = names[who.lower()]
        elif not names:
            continue    # a dataset whose files are numbered (SEED-IV): a lettered name is a stray
        else:
            raise DataError(f"{path}: unknown subject {who!r} in the file name (expected a subject number or one "
                            f"of {', '.join(names)})")
        other = found.setdefault(subject, {}).setdefault(date, path)
        if other != path:
            raise DataError(f"{path}: {other.name} holds the same recording (subject {subject}, {date}); keep one")
    if not found:
        raise DataError(f"{folder}: no recordings (expected files named <subject>_<YYYYMMDD>.mat)")
    return found


def _scan_dated_files(folder: Path, dataset: Dataset) -> dict[tuple[int, int], Path]:
    """(subject, session) -> file; sessions from the dates (see find_recordings)."""
    out = {}
    for subject, by_date in _recording_files(folder, dataset.subject_names).items():
        dates = sorted(by_date, key=int)  # numerically, never as text
        if len(dates) > len(dataset.sessions):  # ranking them would shift every later session by one
            files = ", ".join(by_date[d].name for d in dates)
            raise DataError(f"{folder}: subject {subject} has {len(dates)} files ({files}); {dataset.name} has "
                            f"{len(dataset.sessions)} sessions per subject, one file each (is one a copy saved under "
                            f"another date?)")
        known = dataset.subjects.get(subject, ("", ()))[1]
        sessions = [known.index(d) + 1 for d in dates] if all(d in known for d in dates) else range(1, len(dates) + 1)
        out.update({(subject, session): by_date[date] for session, date in zip(sessions, dates)})
    return out


def _scan_session_folders(folder: Path, dataset: Dataset) -> dict[tuple[int, int], Path]:
    """(subject, session) -> file; session = the number of the folder holding the file.

    Folders named by a number are session folders (01/ reads as session 1), other folders are
    strays. Two folders of one session (1/ and 01/) are an error, and so is a number outside the
    entry's sessions (0/, 4/): SEED-IV has 3 sessions and labels for no other, so such a folder is a
    misplaced copy rather than data to skip.
    """
    names, sessions = dataset.subject_names, dataset.sessions
    expected = ", ".join(f"{s}/" for s in sessions)
    session_dirs: dict[int, Path] = {}
    for d in list_folder(folder, "*"):
        if not (d.is_dir() and d.name.isascii() and d.name.isdigit()):  # isdigit alone admits '²', which int() rejects
            continue
        session = int(d.name)
        if session not in sessions:
            raise DataError(f"{d}: session folder {d.name}, but {dataset.name} has sessions {', '.join(map(str, sessions))} "
                            f"(expected folders {expected})")
        if session in session_dirs:
            raise DataError(f"{session_dirs[session]} and {d}: both are session {session}; expected one folder per "
                            f"session ({expected})")
        session_dirs[session] = d
    if not session_dirs:
        raise DataError(f"{folder}: no session folders (expected {expected})")
    out = {}
    for session, session_dir in session_dirs.items():
        for subject, by_date in _recording_files(session_dir, names).items():
            if len(by_date) > 1:
                files = ", ".join(p.name for p in by_date.values())
                raise DataError(f"{session_dir}: subject {subject} has {len(by_date)} files ({files}); expected one per session folder")
            out[(subject, session)] = next(iter(by_date.values()))
    return out


# ----------------------------------------------------------------------------- file readers


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# What one .mat of these datasets can need, checked on the shapes its headers declare before any value is read: a
# file of a few kB can declare gigabytes (an HDF5 dataset whose chunks were never written, a compressed v5
# variable). The longest trial of either dataset lasts 265 s (SEED's trial 9: 53,001 samples at 200 Hz, 265 DE
# windows), the longest session 3,404 s (SEED-IV's session 1). A variable may hold one trial of up to MAX_TRIAL_S
# (62 x 360,000 raw samples, 179 MB as float64; 62 x 1,800 windows x 5 bands of features), about 7 times the
# longest, and a file up to MAX_FILE_S of raw EEG (62 x 1,440,000 values, 714 MB), twice the longest session.
MAX_TRIAL_S = 1800
MAX_FILE_S = 7200
MAX_FILE_VALUES = len(CHANNELS) * MAX_FILE_S * SAMPLING_RATE
# (values a variable read may declare, what they are): raw EEG, DE features (1-s windows the shortest), labels
RAW_VALUES = (len(CHANNELS) * MAX_TRIAL_S * SAMPLING_RATE, f"{len(CHANNELS)} electrodes x {MAX_TRIAL_S} s at {SAMPLING_RATE} Hz")
FEATURE_VALUES = (len(CHANNELS) * MAX_TRIAL_S * len(BANDS), f"{len(CHANNELS)} electrodes x {MAX_TRIAL_S} windows x {len(BANDS)} bands")
LABEL_VALUES = (1024, "a label per trial")
MAT_FILE_LIMIT = 2**30  # bytes on disk: MAX_FILE_VALUES as float64 (714 MB), plus MATLAB's and HDF5's headers
# MATLAB classes whose size scipy.io.whosmat's shape gives (cells, structs, objects and sparse arrays hold more)
MAT_NUMBER_CLASSES = {"double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                      "logical", "char"}


def _is_hdf5(fh) -> bool:
    """Whether the open binary file is HDF5 (MATLAB v7.3): the signature at byte 0, 512, 1024, 2048, ... (where
    the HDF5 format allows its superblock; MATLAB writes a 512-byte header before it), as h5py.is_hdf5."""
    size, offset = os.fstat(fh.fileno()).st_size, 0
    while offset + len(HDF5_SIGNATURE) <= size:
        fh.seek(offset)
        if fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
            return True
        offset = max(512, 2 * offset)
    return False


def stored_elsewhere(dataset) -> str | None:
    """"virtual" or "external" when an h5py Dataset's values lie in other files (HDF5 virtual datasets, external
    raw files: reading it would read whatever file it names), else None. Checked before any value is read, for
    .mat files and for Keras weights (sst.models.keras_weights)."""
    return "virtual" if dataset.is_virtual else "external" if dataset.external else None


def _load_mat(path: Path, keep: Callable[[str], object], most: tuple[int, str]) -> dict[str, np.ndarray]:
    """The variables of a .mat file whose names pass `keep`, as NumPy arrays in MATLAB's shape.

    MATLAB v5 files go through scipy.io.loadmat; v7.3 files are HDF5 and go through h5py, which
    shows MATLAB's column-major arrays transposed: we transpose back. Before any value is read, the file must
    be a regular file of at most MAT_FILE_LIMIT bytes (a link is followed: the dataset folder is the user's own
    copy, which may well link to a shared one), and the shapes declared must fit: at most `most` (values, what
    they are) for a variable read, a raw trial for the others, MAX_FILE_VALUES in all; HDF5 data must lie in the
    file (no virtual or external storage, no link out of it).
    """
    path = Path(path)
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, RuntimeError) as e:     # a loop of links
        raise DataError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    import scipy.io  # here: 0.2 s of every command that reads no .mat file (run.py)

    try:
        with open_regular(real, MAT_FILE_LIMIT) as fh:
            if _is_hdf5(fh):
                fh.seek(0)
                return _load_hdf5(path, fh, keep, most)
            fh.seek(0)
            declared = scipy.io.whosmat(fh)
            hidden = next(((name, kind) for name, _, kind in declared if kind not in MAT_NUMBER_CLASSES), None)
            if hidden is not None:
                raise DataError(f"{path}: key {printable(hidden[0])}: a MATLAB {printable(hidden[1])}, whose size "
                                f"cannot be checked before it is read; these datasets' files hold arrays of numbers only")
            _check_declared(path, [(name, shape, keep(name)) for name, shape, _ in declared], most)
            fh.seek(0)
            # decode every variable: reading only the wanted ones would not notice a file cut short after them
            return {k: v for k, v in scipy.io.loadmat(fh).items() if not k.startswith("__") and keep(k)}
    except DataError:
        raise
    except NotRegular as e:
        raise DataError(f"{path}: {e}") from None
    except Exception as e:  # a damaged file fails anywhere inside scipy/h5py: report it as the file's fault
        reason = (str(e).splitlines() or [""])[0]
        raise DataError(f"{path}: not a readable MATLAB .mat file ({type(e).__name__}: {reason})") from None


def _load_hdf5(path: Path, fh, keep: Callable[[str], object], most: tuple[int, str]) -> dict[str, np.ndarray]:
    """_load_mat's v7.3 part: the datasets at the top of the open HDF5 file whose names pass `keep`, each checked
    from its metadata before any is read."""
    import h5py  # imported for v7.3 files only: 40 ms of every command otherwise

    with h5py.File(fh, "r") as f:
        datasets_kept, declared = [], []
        for name in f:
            if not keep(name):
                continue
            link = f.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):     # SoftLink, ExternalLink: elsewhere in the file, or another
                raise DataError(f"{path}: key {printable(name)} is a {type(link).__name__}; links are not followed: store the "
                                f"array itself in the file")
            dataset = f[name]
            if not isinstance(dataset, h5py.Dataset):
                continue
            elsewhere = stored_elsewhere(dataset)
            if elsewhere:
                raise DataError(f"{path}: key {printable(name)}: its values lie in other files ({elsewhere} storage), which are "
                                f"not read; save the array itself in the .mat file")
            if dataset.dtype.kind not in "biuf":
                raise DataError(f"{path}: key {printable(name)}: stored as {dataset.dtype}, expected real numbers")
            chunk = math.prod(dataset.chunks or ())
            if chunk > most[0]:     # a chunk is decompressed whole to read any of it
                raise DataError(f"{path}: key {printable(name)}: stored in chunks of shape {dataset.chunks[::-1]} ({chunk} values), "
                                f"more than the {most[0]} ({most[1]}) it can hold; not read")
            declared.append((name, dataset.shape[::-1], True))      # in MATLAB's order, as the arrays are returned
            datasets_kept.append((name, dataset))
        _check_declared(path, declared, most)
        return {name: np.asarray(dataset[()]).T for name, dataset in datasets_kept}


def _check_declared(path: Path, declared: list[tuple[str, tuple, bool]], most: tuple[int, str]) -> None:
    """DataError naming the variable if a declared shape (name, shape, whether it is read) needs more than a file
    of these datasets can: `most` values for a variable read, a raw trial (RAW_VALUES) for the others (which
    scipy decodes too), MAX_FILE_VALUES in all."""
    total = 0
    for name, shape, read in declared:
        values = math.prod(shape)
        limit, what = most if read else RAW_VALUES
        if values > limit:
            raise DataError(f"{path}: key {printable(name)}: declares shape {tuple(shape)} ({values} values), more than "
                            f"the {limit} ({what}) it can hold; not read")
        total += values
    if total > MAX_FILE_VALUES:
        raise DataError(f"{path}: declares {total} values, more than the {MAX_FILE_VALUES} ({len(CHANNELS)} electrodes "
                        f"x {MAX_FILE_S} s at {SAMPLING_RATE} Hz) a file of these datasets can hold; not read")


FLOAT32_MAX = float(np.finfo(np.float32).max)  # every array ends up as float32 (Preprocess.py, run.py)


def _check_array(path: Path, key: str, a: np.ndarray, expected: str, ok: bool) -> None:
    if not ok:
        raise DataError(f"{path}: key {key}: expected {expected}, got shape {a.shape} {a.dtype}")
    in_range = np.abs(a) <= FLOAT32_MAX  # False for NaN and Inf too
    if not in_range.all():
        bad = a.size - np.count_nonzero(np.isfinite(a))
        if bad:
            raise DataError(f"{path}: key {key}: {bad} NaN/Inf values (expected finite numbers)")
        # finite in the file, but Inf once stored as float32
        raise DataError(f"{path}: key {key}: {a.size - np.count_nonzero(in_range)} values beyond the float32 range "
                        f"(expected finite numbers, |x| <= {FLOAT32_MAX:.3g})")


def _by_trial(path: Path, arrays: dict[str, np.ndarray], pattern: re.Pattern, family: str) -> dict[int, tuple[str, np.ndarray]]:
    """trial number (parsed from the key) -> (key, array); trials must be numbered 1..n."""
    trials: dict[int, tuple[str, np.ndarray]] = {}
    for key, a in arrays.items():
        trial = int(pattern.match(key).groups()[-1])
        if trial in trials:
            raise DataError(f"{path}: keys {trials[trial][0]} and {key} both hold trial {trial}")
        trials[trial] = (key, a)
    if 0 in trials:
        raise DataError(f"{path}: key {trials[0][0]}: unexpected trial 0 (trials are numbered from 1)")
    missing = next((k for k in range(1, max(trials) + 1) if k not in trials), None)
    if missing is not None:
        raise DataError(f"{path}: key {family}{missing} missing (trials must be numbered 1..{max(trials)})")
    return dict(sorted(trials.items()))


def read_features(path: str | Path, feature: str) -> dict[int, np.ndarray]:
    """trial -> (62, T, 5) float64 DE of one feature file (`feature` = de_LDS or de_movingAve).

    Keys are `{feature}{trial}`; T = number of DE windows (1 s SEED, 4 s SEED-IV); last axis =
    bands delta..gamma (BANDS). Other variables in the file (psd_*, dasm_*, ...) are ignored.
    """
    path = Path(path)
    pattern = re.compile(rf"^{re.escape(feature)}(\d+)$")
    arrays = _load_mat(path, pattern.match, FEATURE_VALUES)
    if not arrays:
        raise DataError(f"{path}: no {feature}<trial> keys (expected {feature}1, {feature}2, ...)")
    out = {}
    for trial, (key, a) in _by_trial(path, arrays, pattern, feature).items():
        ok = a.ndim == 3 and a.shape[0] == len(CHANNELS) and a.shape[1] >= 1 and a.shape[2] == len(BANDS) \
            and np.issubdtype(a.dtype, np.number) and not np.iscomplexobj(a)
        _check_array(path, key, a, f"({len(CHANNELS)}, T, {len(BANDS)}) real numbers (electrodes, windows, bands)", ok)
        out[trial] = np.asarray(a, dtype=np.float64)
    return out


def read_raw(path: str | Path, prefix: str | None = None) -> dict[int, np.ndarray]:
    """trial -> (62, N) float64 raw EEG in microvolts at 200 Hz, from keys `<prefix>_eeg<trial>`
    (any one prefix, or the given one: Recording.prefix)."""
    path = Path(path)
    arrays = _load_mat(path, RAW_KEY.match, RAW_VALUES)
    if not arrays:
        raise DataError(f"{path}: no <prefix>_eeg<trial> keys (expected e.g. djc_eeg1, djc_eeg2, ...)")
    prefixes = sorted({RAW_KEY.match(k).group(1) for k in arrays})
    if len(prefixes) > 1:
        raise DataError(f"{path}: keys with different prefixes ({', '.join(prefixes)}); expected one <prefix>_eeg<trial> family")
    if prefix is not None and prefixes[0] != prefix:
        raise DataError(f"{path}: keys {prefixes[0]}_eeg<trial>, but the subject named in the file name has "
                        f"{prefix}_eeg<trial> keys; is the file named after the right subject?")
    out = {}
    for trial, (key, a) in _by_trial(path, arrays, RAW_KEY, f"{prefixes[0]}_eeg").items():
        ok = a.ndim == 2 and a.shape[0] == len(CHANNELS) and a.shape[1] >= 1 \
            and np.issubdtype(a.dtype, np.number) and not np.iscomplexobj(a)
        _check_array(path, key, a, f"({len(CHANNELS)}, N) real numbers (electrodes, samples at {SAMPLING_RATE} Hz)", ok)
        out[trial] = np.asarray(a, dtype=np.float64)
    return out


def read_labels(name: str, root: str | Path) -> dict[int, np.ndarray]:
    """session -> (n_trials,) int64 0-based class per trial (see the entry's class_names).

    From label.mat (SEED): values -1/0/1 shifted to 0/1/2 = negative/neutral/positive, the same for every
    session; the feature and the raw EEG folder each hold one, and they must agree. From ReadMe.txt
    (SEED-IV): its `sessionK_label = [...]` lines (K among the sessions; a line given twice with the same
    labels is a warning, with different labels an error); sessions it lacks (or all, without ReadMe.txt)
    come from the entry's trial_labels, which is said once on stdout.
    Labels putting every trial of a session in one class are an error; a class missing from a
    session, a warning.
    """
    dataset, root = datasets.get(name), Path(root)
    if dataset.label_file == "label.mat":
        return _read_label_mats(root, dataset)
    readme = next((p for p in sorted(root.glob("*")) if p.name.lower() == "readme.txt"), None) if root.is_dir() else None
    parsed: dict[int, np.ndarray] = {}
    if readme is not None:
        n_trials, n_classes, sessions = dataset.n_trials, dataset.n_classes, dataset.sessions
        names: dict[int, str] = {}  # session -> its line's name as written (session1_label)
        repeated = []
        for session, values in LABEL_LINE.findall(readme.read_text(encoding="utf-8", errors="replace")):
            name = f"session{session}_label"
            items = [v.strip() for v in values.split(",") if v.strip()]
            # isdecimal, not isdigit: int() rejects digits such as '²'
            ok = len(items) == n_trials and all(v.isdecimal() and int(v) < n_classes for v in items)
            if not ok:
                raise DataError(f"{readme}: {name}: expected {n_trials} integers in "
                                f"0..{n_classes - 1}, got [{values.strip()}]")
            k = int(session)
            if k not in sessions:
                raise DataError(f"{readme}: {name}: {dataset.name} has sessions {', '.join(map(str, sessions))} "
                                f"(expected session1_label .. session{sessions[-1]}_label)")
            labels = np.array([int(v) for v in items], dtype=np.int64)
            if k in parsed:  # keeping either line would be a silent choice
                differ = np.flatnonzero(parsed[k] != labels)
                if differ.size:
                    t = int(differ[0])
                    raise DataError(f"{readme}: session {k} labelled twice, by {names[k]} and {name}, differently "
                                    f"(trial {t + 1}: {parsed[k][t]} vs {labels[t]}); expected one line per session")
                repeated.append(f"{names[k]} and {name}")
                continue
            parsed[k], names[k] = labels, name
        if repeated:
            print(f"warning: {readme}: {'; '.join(repeated)} give the same labels twice; using them once", file=sys.stderr)
        _check_classes(readme, dataset, {names[s]: parsed[s] for s in sorted(parsed)})
    fallback = [s for s in dataset.sessions if s not in parsed]
    if fallback:
        where = f"{readme} has no session{fallback[0]}_label line" if readme else f"no ReadMe.txt in {root}"
        print(f"note: {where}; using the {dataset.name} labels of sst/data/datasets.py for session(s) "
              f"{', '.join(map(str, fallback))}")
    return {**{s: np.array(dataset.trial_labels[s], dtype=np.int64) for s in fallback}, **parsed}


def _check_classes(path: Path, dataset: Dataset, labels: dict[str, np.ndarray], shift: int = 0) -> None:
    """Raise if a session's labels name one class only; warn (one line) for classes some session lacks.

    labels: where in `path` (key label, session2_label) -> (n_trials,) int64 0-based classes;
    shift: added to a class to get the value written in the file (SEED's label.mat: -1).
    A session of one class leaves nothing to tell apart (and per-session accuracy trivially 1):
    a mislabelled file. The real sessions hold every class, but one lacking a class still trains.
    """
    classes, names = np.arange(dataset.n_classes), dataset.class_names
    lacking = []
    for where, y in labels.items():
        present = np.isin(classes, y)  # (n_classes,) bool
        if present.sum() == 1:
            c = int(y[0])
            raise DataError(f"{path}: {where}: all {y.size} trials have label {c + shift} ({names[c]}); "
                            f"expected trials of the {dataset.n_classes} {dataset.name} classes "
                            f"({', '.join(f'{k + shift} {n}' for k, n in enumerate(names))})")
        if not present.all():
            absent = ", ".join(f"{k + shift} ({names[k]})" for k in classes[~present])
            lacking.append(f"{where} has no trial labelled {absent}")
    if lacking:
        print(f"warning: {path}: {'; '.join(lacking)}; {dataset.name} has {dataset.n_classes} classes per session",
              file=sys.stderr)


def _read_label_mat(path: Path, n_trials: int) -> np.ndarray:
    """(n_trials,) int64: the `label` variable of a label.mat (SEED), values -1/0/1 as in the file."""
    arrays = _load_mat(path, lambda name: name == "label", LABEL_VALUES)
    if "label" not in arrays:
        raise DataError(f"{path}: key label missing (expected a (1, {n_trials}) array of -1/0/1)")
    values = np.ravel(arrays["label"])
    ok = values.size == n_trials and np.issubdtype(values.dtype, np.number) and np.isin(values, (-1, 0, 1)).all()
    if not ok:
        raise DataError(f"{path}: key label: expected {n_trials} values in -1/0/1, got shape {arrays['label'].shape}")
    return values.astype(np.int64)


def _read_label_mats(root: Path, dataset: Dataset) -> dict[int, np.ndarray]:
    """Labels from the label.mat files of the feature and raw EEG folders (SEED ships one in each)."""
    folders = [*dataset.feature_folders, dataset.raw_folder]
    paths = [root / f / "label.mat" for f in folders if (root / f / "label.mat").is_file()]
    if not paths:
        folder = next((f for f in folders if (root / f).is_dir()), folders[0])
        shipped = " and ".join(dict.fromkeys([dataset.feature_folders[0], dataset.raw_folder]))
        raise DataError(f"{root / folder / 'label.mat'}: file not found ({dataset.name} ships it inside {shipped})")
    # the copies must agree: which one a run used would otherwise decide its labels
    first, *others = paths
    values = _read_label_mat(first, dataset.n_trials)
    for other in others:
        theirs = _read_label_mat(other, dataset.n_trials)
        differ = np.flatnonzero(theirs != values)
        if differ.size:
            k = int(differ[0])
            raise DataError(f"{first} and {other} disagree on {differ.size} of {values.size} trials (trial {k + 1}: "
                            f"{values[k]} vs {theirs[k]}); expected the same labels in both")
    labels = values + 1  # -1/0/1 -> 0/1/2 = the entry's class_names
    _check_classes(first, dataset, {"key label (every session)": labels}, shift=-1)
    return {s: labels.copy() for s in dataset.sessions}
