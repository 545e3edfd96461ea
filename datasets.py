"""SEED and SEED-IV as the BCMI lab distributes them: every dataset fact, and the file readers.

This module is the one place for facts about the datasets (channel order, the paper's 9x9 grid,
DE bands, subjects and session dates, trial labels and lengths) and the one place that opens
their files. No command line; Preprocess.py is the entry point that uses it:

    recordings = find_recordings("SEED", "data/SEED")   # [Recording(subject=1, session=1, ...), ...]
    de = read_features(recordings[0].features, "de_LDS")  # {trial: (62, T, 5) float64}
    eeg = read_raw(recordings[0].raw, recordings[0].prefix)  # {trial: (62, N) float64, uV at 200 Hz}
    labels = read_labels("SEED", "data/SEED")             # {session: (15,) int64, 0-based}

Folder layout (the real one, which synthetic.py also writes):
    SEED/ExtractedFeatures/ (or ExtractedFeatures_1s/)   <subject>_<YYYYMMDD>.mat, label.mat
    SEED/Preprocessed_EEG/                                <subject>_<YYYYMMDD>.mat, label.mat
    SEED_IV/eeg_feature_smooth/<session>/                 <subject>_<YYYYMMDD>.mat
    SEED_IV/eeg_raw_data/<session>/                       <subject>_<YYYYMMDD>.mat
    SEED_IV/ReadMe.txt                                    sessionK_label = [...];

Subject, session and trial numbers are parsed from file names, dates and key names, never taken
from positions or lexicographic order. Every problem with the files raises `errors.DataError`
with one line naming the file, the key and what was expected; an oddity that leaves the data
usable (a label line given twice, a file whose date the tables do not know) prints one line
starting `warning: ` on stderr naming the files. Nothing is changed silently.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from errors import DataError
from fileio import list_folder

# ----------------------------------------------------------------------------- facts

CHANNELS = (
    "FP1", "FPZ", "FP2", "AF3", "AF4", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8",
    "FT7", "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8",
    "T7", "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8",
    "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8",
    "P7", "P5", "P3", "P1", "PZ", "P2", "P4", "P6", "P8",
    "PO7", "PO5", "PO3", "POZ", "PO4", "PO6", "PO8", "CB1", "O1", "OZ", "O2", "CB2",
)  # file order of the 62 electrodes (rows of every (62, ...) array), same for SEED-IV

GRID_SIZE = 9
_GRID = """
    -    -    -    FP1  FPZ  FP2  -    -    -
    -    -    -    AF3  -    AF4  -    -    -
    F7   F5   F3   F1   FZ   F2   F4   F6   F8
    FT7  FC5  FC3  FC1  FCZ  FC2  FC4  FC6  FT8
    T7   C5   C3   C1   CZ   C2   C4   C6   T8
    TP7  CP5  CP3  CP1  CPZ  CP2  CP4  CP6  TP8
    P7   P5   P3   P1   PZ   P2   P4   P6   P8
    -    PO7  PO5  PO3  POZ  PO4  PO6  PO8  -
    -    -    CB1  O1   OZ   O2   CB2  -    -
"""  # the paper's 9x9 map, nose up; '-' cells hold zero


def _grid_positions() -> np.ndarray:
    cells = {name: (r, c) for r, line in enumerate(_GRID.split("\n")[1:-1]) for c, name in enumerate(line.split())}
    positions = np.array([cells[name] for name in CHANNELS], dtype=np.int64)
    positions.flags.writeable = False
    return positions


GRID_POSITIONS = _grid_positions()  # (62, 2) int64: (row, col) of each electrode on the 9x9 grid

SAMPLING_RATE = 200  # Hz, raw EEG of both datasets (the lab's 200 Hz downsampled release)
BANDS = ("delta", "theta", "alpha", "beta", "gamma")  # last axis of every DE array

DATASETS = ("SEED", "SEED-IV")
CLASS_NAMES = {
    "SEED": ("negative", "neutral", "positive"),  # label.mat's -1 / 0 / 1, shifted by +1
    "SEED-IV": ("neutral", "sad", "fear", "happy"),
}
N_CLASSES = {dataset: len(names) for dataset, names in CLASS_NAMES.items()}
WINDOW_S = {"SEED": 1, "SEED-IV": 4}  # seconds per DE window = per sample; never mix the two
BANDS_HZ = {
    "SEED": ((1, 3), (4, 7), (8, 13), (14, 30), (31, 50)),
    "SEED-IV": ((1, 4), (4, 8), (8, 14), (14, 31), (31, 50)),
}
N_TRAIN_TRIALS = {"SEED": 9, "SEED-IV": 16}  # the standard split: first trials train, the rest test

# subject -> (key prefix in the raw EEG files, session dates in session order)
SUBJECTS = {
    "SEED": {
        1: ("djc", ("20131027", "20131030", "20131107")),
        2: ("jl", ("20140404", "20140413", "20140419")),
        3: ("jj", ("20140603", "20140611", "20140629")),
        4: ("lqj", ("20140621", "20140702", "20140705")),
        5: ("ly", ("20140411", "20140418", "20140506")),
        6: ("mhw", ("20130712", "20131016", "20131113")),
        7: ("phl", ("20131027", "20131030", "20131106")),
        8: ("sxy", ("20140511", "20140514", "20140521")),
        9: ("wk", ("20140620", "20140627", "20140704")),
        10: ("ww", ("20131130", "20131204", "20131211")),
        11: ("wsf", ("20140618", "20140625", "20140630")),
        12: ("wyw", ("20131127", "20131201", "20131207")),
        13: ("xyl", ("20140527", "20140603", "20140610")),
        14: ("ys", ("20140601", "20140615", "20140627")),
        15: ("zjy", ("20130709", "20131016", "20131105")),
    },
    "SEED-IV": {
        1: ("cz", ("20160518", "20161125", "20161126")),
        2: ("ha", ("20150915", "20150920", "20151012")),
        3: ("hql", ("20150919", "20151018", "20151101")),
        4: ("ldy", ("20151111", "20151118", "20151123")),
        5: ("ly", ("20160406", "20160413", "20160420")),
        6: ("mhw", ("20150507", "20150511", "20150512")),
        7: ("mz", ("20150715", "20150717", "20150721")),
        8: ("qyt", ("20151103", "20151110", "20151117")),
        9: ("rx", ("20151028", "20151119", "20151209")),
        10: ("tyc", ("20151014", "20151021", "20151023")),
        11: ("whh", ("20150916", "20150921", "20151011")),
        12: ("wll", ("20150725", "20150804", "20150807")),
        13: ("wq", ("20151115", "20151125", "20161130")),
        14: ("zjd", ("20151205", "20151208", "20151215")),
        15: ("zjy", ("20150508", "20150514", "20150527")),
    },
}
SESSIONS = (1, 2, 3)

SEED_LABEL_VALUES = (1, 0, -1, -1, 0, 1, -1, 0, 1, 1, 0, -1, 0, 1, -1)  # label.mat: 1 pos, 0 neu, -1 neg
_SEED_WINDOWS = (235, 233, 206, 238, 185, 195, 237, 216, 265, 237, 235, 233, 235, 238, 206)

# session -> 0-based class index per trial (trial k at position k-1), see CLASS_NAMES
TRIAL_LABELS = {
    "SEED": {s: tuple(v + 1 for v in SEED_LABEL_VALUES) for s in SESSIONS},
    "SEED-IV": {
        1: (1, 2, 3, 0, 2, 0, 0, 1, 0, 1, 2, 1, 1, 1, 2, 3, 2, 2, 3, 3, 0, 3, 0, 3),
        2: (2, 1, 3, 0, 0, 2, 0, 2, 3, 3, 2, 3, 2, 0, 1, 1, 2, 1, 0, 3, 0, 1, 3, 1),
        3: (1, 2, 2, 1, 3, 3, 3, 1, 1, 2, 1, 0, 2, 3, 3, 0, 2, 3, 0, 0, 2, 0, 1, 0),
    },
}
# session -> DE windows per trial (SEED: T 1-s windows, raw N = 200*T + 1; SEED-IV: W 4-s windows,
# raw N about 800*W + 1)
TRIAL_WINDOWS = {
    "SEED": {s: _SEED_WINDOWS for s in SESSIONS},
    "SEED-IV": {
        1: (42, 23, 49, 32, 22, 40, 38, 52, 36, 42, 12, 27, 54, 42, 64, 35, 17, 44, 35, 12, 28, 28, 43, 34),
        2: (55, 25, 34, 36, 53, 27, 34, 46, 34, 20, 60, 12, 36, 27, 44, 15, 46, 49, 45, 10, 37, 44, 24, 19),
        3: (42, 32, 23, 45, 48, 26, 64, 23, 26, 16, 51, 41, 39, 19, 28, 44, 14, 17, 45, 22, 39, 38, 41, 39),
    },
}

# Folders as downloaded. SEED's newer release calls the 1-s features ExtractedFeatures_1s; the
# first folder of the tuple that exists is used.
FEATURE_FOLDERS = {"SEED": ("ExtractedFeatures", "ExtractedFeatures_1s"), "SEED-IV": ("eeg_feature_smooth",)}
RAW_FOLDER = {"SEED": "Preprocessed_EEG", "SEED-IV": "eeg_raw_data"}
# Feature files hold, per trial i and in this order, <family>_<smoothing>{i} for every family and
# smoothing; rows: de/psd 62 electrodes, dasm/rasm 27 left-right pairs, asm 54, dcau 23 front-back pairs.
FEATURE_FAMILIES = {"SEED": ("de", "psd", "dasm", "rasm", "asm", "dcau"), "SEED-IV": ("de", "psd")}
SMOOTHINGS = ("movingAve", "LDS")

# Some copies of SEED in circulation name the files after the subject (dujingcheng_20131027.mat, as
# public loaders of SEED do) instead of numbering them (SEED_FORMAT.md). The names in alphabetical
# order are subjects 1-15, and their initials are the key prefixes of SUBJECTS: a file found by name
# must hold its subject's prefix (find_recordings sets Recording.prefix, read_raw checks it).
SUBJECT_NAMES = {
    "SEED": {name: subject for subject, name in enumerate((
        "dujingcheng", "jianglin", "jingjing", "liuqiujun", "liuye", "mahaiwei", "penghuiling", "sunxiangyu",
        "wangkui", "weiwei", "wusifan", "wuyangwei", "xiayulu", "yansheng", "zhujiayi"), start=1)},
    "SEED-IV": {},
}
# <subject number or name>_<YYYYMMDD>.mat; anything else (label.mat, readme.txt) is a stray
RECORDING_NAME = re.compile(r"^(\d+|[A-Za-z]+)_(\d{8})\.mat$")
RAW_KEY = re.compile(r"^(.+)_eeg(\d+)$")  # the prefix differs per subject: never hard-code it
SEED_IV_LABEL_LINE = re.compile(r"session\s*(\d+)\s*_label\s*=\s*\[([^\]]*)\]")

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


def find_recordings(dataset: str, root: str | Path) -> list[Recording]:
    """All recordings under a dataset folder as downloaded, sorted by (subject, session).

    SEED: session = the date's column in the SUBJECTS table when all of a subject's dates are
    known (a partial download keeps its session numbers), else the rank of the date among that
    subject's files, said in one warning line naming the files whose date the table lacks. More
    files for a subject than SEED has sessions (a copy saved under another date) is an error.
    SEED-IV: session = the number of the session folder (see _scan_session_folders).
    When both the feature and the raw EEG folder exist they must hold the same recordings.
    """
    if dataset not in DATASETS:
        raise ValueError(f"{dataset=} is not one of {DATASETS}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found (set [path] dataset_root in the INI file)")
    features_dir = next((root / f for f in FEATURE_FOLDERS[dataset] if (root / f).is_dir()), None)
    raw_dir = root / RAW_FOLDER[dataset] if (root / RAW_FOLDER[dataset]).is_dir() else None
    if features_dir is None and raw_dir is None:
        expected = " or ".join(f"{f}/" for f in (*FEATURE_FOLDERS[dataset], RAW_FOLDER[dataset]))
        raise DataError(f"{root}: no {expected} inside; expected the {dataset} folder as downloaded")
    names = SUBJECT_NAMES[dataset]
    scan = partial(_scan_dated_files, subjects=SUBJECTS[dataset], names=names) if dataset == "SEED" \
        else partial(_scan_session_folders, names=names)
    features = scan(features_dir) if features_dir else {}
    raws = scan(raw_dir) if raw_dir else {}
    if features_dir and raw_dir:
        for have, have_dir, other, other_dir in ((features, features_dir, raws, raw_dir), (raws, raw_dir, features, features_dir)):
            for key in sorted(set(have) - set(other)):
                expected = other_dir / have[key].relative_to(have_dir)
                missing = f"{expected.parent}: session folder missing" if not expected.parent.is_dir() else f"{expected}: missing"
                raise DataError(f"{missing}, but {have[key]} exists (both folders must hold the same recordings)")
    keys = sorted(set(features) | set(raws))

    def prefix(subject: int, raw: Path | None) -> str | None:
        named = raw is not None and not RECORDING_NAME.match(raw.name).group(1).isdigit()
        return SUBJECTS[dataset][subject][0] if named else None

    recordings = [Recording(subject=s, session=k, features=features.get((s, k)), raw=raws.get((s, k)),
                            prefix=prefix(s, raws.get((s, k)))) for s, k in keys]
    if dataset == "SEED":
        _warn_unknown_dates(recordings, SUBJECTS[dataset])
    return recordings


def _warn_unknown_dates(recordings: list[Recording], subjects: dict) -> None:
    """One warning line naming the files whose session is a date rank because SUBJECTS lacks their date.

    Such a file may be a recording the table does not know, or a copy that took a real session's
    number (1_20131028.mat beside 1_20131027.mat and 1_20131030.mat becomes session 2): the user decides.
    """
    unknown = [(r, path) for r in recordings if r.subject in subjects for path in (r.features, r.raw)
               if path is not None and RECORDING_NAME.match(path.name).group(2) != subjects[r.subject][1][r.session - 1]]
    if not unknown:
        return
    shown = [f"{path} (subject {r.subject}, made session {r.session}; known dates {', '.join(subjects[r.subject][1])})"
             for r, path in unknown[:3]]
    more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
    print(f"warning: {len(unknown)} SEED file(s) dated outside the session table of datasets.py, numbered by date rank "
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


def _scan_dated_files(folder: Path, subjects: dict, names: dict[str, int]) -> dict[tuple[int, int], Path]:
    """(subject, session) -> file; sessions from the dates (see find_recordings)."""
    out = {}
    for subject, by_date in _recording_files(folder, names).items():
        dates = sorted(by_date, key=int)  # numerically, never as text
        if len(dates) > len(SESSIONS):  # ranking them would shift every later session by one
            files = ", ".join(by_date[d].name for d in dates)
            raise DataError(f"{folder}: subject {subject} has {len(dates)} files ({files}); SEED has {len(SESSIONS)} "
                            f"sessions per subject, one file each (is one a copy saved under another date?)")
        known = subjects.get(subject, ("", ()))[1]
        sessions = [known.index(d) + 1 for d in dates] if all(d in known for d in dates) else range(1, len(dates) + 1)
        out.update({(subject, session): by_date[date] for session, date in zip(sessions, dates)})
    return out


def _scan_session_folders(folder: Path, names: dict[str, int]) -> dict[tuple[int, int], Path]:
    """(subject, session) -> file; session = the number of the folder holding the file.

    Folders named by a number are session folders (01/ reads as session 1), other folders are
    strays. Two folders of one session (1/ and 01/) are an error, and so is a number outside
    SESSIONS (0/, 4/): SEED-IV has 3 sessions and labels for no other, so such a folder is a
    misplaced copy rather than data to skip.
    """
    expected = ", ".join(f"{s}/" for s in SESSIONS)
    session_dirs: dict[int, Path] = {}
    for d in list_folder(folder, "*"):
        if not (d.is_dir() and d.name.isascii() and d.name.isdigit()):  # isdigit alone admits '²', which int() rejects
            continue
        session = int(d.name)
        if session not in SESSIONS:
            raise DataError(f"{d}: session folder {d.name}, but SEED-IV has sessions {', '.join(map(str, SESSIONS))} "
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


def _is_hdf5(path: Path) -> bool:
    """Whether the file is HDF5 (MATLAB v7.3): the signature at byte 0, 512, 1024, 2048, ... (where the
    HDF5 format allows its superblock; MATLAB writes a 512-byte header before it), as h5py.is_hdf5."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        offset = 0
        while offset + len(HDF5_SIGNATURE) <= size:
            fh.seek(offset)
            if fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
            offset = max(512, 2 * offset)
    return False


def _load_mat(path: Path, keep: Callable[[str], object]) -> dict[str, np.ndarray]:
    """The variables of a .mat file whose names pass `keep`, as NumPy arrays in MATLAB's shape.

    MATLAB v5 files go through scipy.io.loadmat; v7.3 files are HDF5 and go through h5py, which
    shows MATLAB's column-major arrays transposed: we transpose back.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    import scipy.io  # here: 0.2 s of every command that reads no .mat file (run.py)

    try:
        if _is_hdf5(path):
            import h5py  # imported for v7.3 files only: 40 ms of every command otherwise

            with h5py.File(path, "r") as f:
                return {name: np.asarray(f[name]).T for name in f if keep(name) and isinstance(f[name], h5py.Dataset)}
        # decode every variable: reading only the wanted ones would not notice a file cut short after them
        return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__") and keep(k)}
    except Exception as e:  # a damaged file fails anywhere inside scipy/h5py: report it as the file's fault
        reason = (str(e).splitlines() or [""])[0]
        raise DataError(f"{path}: not a readable MATLAB .mat file ({type(e).__name__}: {reason})") from None


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
    arrays = _load_mat(path, pattern.match)
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
    arrays = _load_mat(path, RAW_KEY.match)
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


def read_labels(dataset: str, root: str | Path) -> dict[int, np.ndarray]:
    """session -> (n_trials,) int64 0-based class per trial (see CLASS_NAMES).

    SEED: label.mat, values -1/0/1 shifted to 0/1/2 = negative/neutral/positive, the same for every
    session; the feature and the raw EEG folder each hold one, and they must agree. SEED-IV: the
    `sessionK_label = [...]` lines of ReadMe.txt (K in SESSIONS; a line given twice with the same
    labels is a warning, with different labels an error); sessions it lacks (or all, without
    ReadMe.txt) come from TRIAL_LABELS, which is said once on stdout.
    Labels putting every trial of a session in one class are an error; a class missing from a
    session, a warning.
    """
    root = Path(root)
    if dataset == "SEED":
        return _read_seed_labels(root)
    if dataset != "SEED-IV":
        raise ValueError(f"{dataset=} is not one of {DATASETS}")
    readme = next((p for p in sorted(root.glob("*")) if p.name.lower() == "readme.txt"), None) if root.is_dir() else None
    parsed: dict[int, np.ndarray] = {}
    if readme is not None:
        n_trials = len(TRIAL_LABELS[dataset][1])
        names: dict[int, str] = {}  # session -> its line's name as written (session1_label)
        repeated = []
        for session, values in SEED_IV_LABEL_LINE.findall(readme.read_text(encoding="utf-8", errors="replace")):
            name = f"session{session}_label"
            items = [v.strip() for v in values.split(",") if v.strip()]
            # isdecimal, not isdigit: int() rejects digits such as '²'
            ok = len(items) == n_trials and all(v.isdecimal() and int(v) < N_CLASSES[dataset] for v in items)
            if not ok:
                raise DataError(f"{readme}: {name}: expected {n_trials} integers in "
                                f"0..{N_CLASSES[dataset] - 1}, got [{values.strip()}]")
            k = int(session)
            if k not in SESSIONS:
                raise DataError(f"{readme}: {name}: SEED-IV has sessions {', '.join(map(str, SESSIONS))} "
                                f"(expected session1_label .. session{SESSIONS[-1]}_label)")
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
    fallback = [s for s in SESSIONS if s not in parsed]
    if fallback:
        where = f"{readme} has no session{fallback[0]}_label line" if readme else f"no ReadMe.txt in {root}"
        print(f"note: {where}; using the SEED-IV labels of datasets.py for session(s) {', '.join(map(str, fallback))}")
    return {**{s: np.array(TRIAL_LABELS[dataset][s], dtype=np.int64) for s in fallback}, **parsed}


def _check_classes(path: Path, dataset: str, labels: dict[str, np.ndarray], shift: int = 0) -> None:
    """Raise if a session's labels name one class only; warn (one line) for classes some session lacks.

    labels: where in `path` (key label, session2_label) -> (n_trials,) int64 0-based classes;
    shift: added to a class to get the value written in the file (SEED's label.mat: -1).
    A session of one class leaves nothing to tell apart (and per-session accuracy trivially 1):
    a mislabelled file. The real sessions hold every class, but one lacking a class still trains.
    """
    classes = np.arange(N_CLASSES[dataset])
    lacking = []
    for where, y in labels.items():
        present = np.isin(classes, y)  # (n_classes,) bool
        if present.sum() == 1:
            c = int(y[0])
            raise DataError(f"{path}: {where}: all {y.size} trials have label {c + shift} ({CLASS_NAMES[dataset][c]}); "
                            f"expected trials of the {N_CLASSES[dataset]} {dataset} classes "
                            f"({', '.join(f'{k + shift} {n}' for k, n in enumerate(CLASS_NAMES[dataset]))})")
        if not present.all():
            absent = ", ".join(f"{k + shift} ({CLASS_NAMES[dataset][k]})" for k in classes[~present])
            lacking.append(f"{where} has no trial labelled {absent}")
    if lacking:
        print(f"warning: {path}: {'; '.join(lacking)}; {dataset} has {N_CLASSES[dataset]} classes per session",
              file=sys.stderr)


def _read_label_mat(path: Path) -> np.ndarray:
    """(n_trials,) int64: the `label` variable of a SEED label.mat, values -1/0/1 as in the file."""
    arrays = _load_mat(path, lambda name: name == "label")
    if "label" not in arrays:
        raise DataError(f"{path}: key label missing (expected a (1, {len(SEED_LABEL_VALUES)}) array of -1/0/1)")
    values = np.ravel(arrays["label"])
    ok = values.size == len(SEED_LABEL_VALUES) and np.issubdtype(values.dtype, np.number) and np.isin(values, (-1, 0, 1)).all()
    if not ok:
        raise DataError(f"{path}: key label: expected {len(SEED_LABEL_VALUES)} values in -1/0/1, got shape {arrays['label'].shape}")
    return values.astype(np.int64)


def _read_seed_labels(root: Path) -> dict[int, np.ndarray]:
    folders = [*FEATURE_FOLDERS["SEED"], RAW_FOLDER["SEED"]]
    paths = [root / f / "label.mat" for f in folders if (root / f / "label.mat").is_file()]
    if not paths:
        folder = next((f for f in folders if (root / f).is_dir()), folders[0])
        raise DataError(f"{root / folder / 'label.mat'}: file not found (SEED ships it inside {' and '.join(folders[::2])})")
    # the copies must agree: which one a run used would otherwise decide its labels
    first, *others = paths
    values = _read_label_mat(first)
    for other in others:
        theirs = _read_label_mat(other)
        differ = np.flatnonzero(theirs != values)
        if differ.size:
            k = int(differ[0])
            raise DataError(f"{first} and {other} disagree on {differ.size} of {values.size} trials (trial {k + 1}: "
                            f"{values[k]} vs {theirs[k]}); expected the same labels in both")
    labels = values + 1  # -1/0/1 -> 0/1/2 = CLASS_NAMES["SEED"]
    _check_classes(first, "SEED", {"key label (every session)": labels}, shift=-1)
    return {s: labels.copy() for s in SESSIONS}
