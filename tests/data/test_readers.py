"""Tests of datasets.py (facts and readers) and synthetic.py (the real on-disk format).

    python -m pytest tests/test_datasets.py -q

Synthetic trees are tiny (trial_fraction 0.02: 3 to 5 windows per trial) and full of the traps
other loaders fall into: subject 10 sorting before 2, key eeg10 before eeg2, stray files,
SEED-IV session folders, the ExtractedFeatures_1s name, a MATLAB v7.3 (HDF5) file.
"""
import math
import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from conftest import ROOT, dataset_ini, write_v73
from sst.data import datasets, readers, synthetic
from sst.errors import DataError

FRACTION = 0.02


def windows(dataset, session, fraction=FRACTION):
    return [max(synthetic.MIN_WINDOWS, round(t * fraction)) for t in datasets.get(dataset).trial_windows[session]]


# ----------------------------------------------------------------------------- facts


# ----------------------------------------------------------------------------- synthetic format


# ----------------------------------------------------------------------------- find_recordings


def test_find_recordings_seed_order_and_strays(seed_tree):
    recordings = readers.find_recordings("SEED", seed_tree)
    assert [(r.subject, r.session) for r in recordings] == [(2, 1), (2, 2), (10, 1), (10, 2)]
    assert recordings[2].features == seed_tree / "ExtractedFeatures" / "10_20131130.mat"
    assert recordings[3].raw == seed_tree / "Preprocessed_EEG" / "10_20131204.mat"


def test_find_recordings_sessions_from_dates(tmp_path, capsys):
    # only session 2 of subject 1: its known date keeps session number 2
    root = synthetic.write_seed(tmp_path / "SEED", subjects=(1,), sessions=(2,), trial_fraction=FRACTION, raw=False)
    assert [(r.subject, r.session, r.raw) for r in readers.find_recordings("SEED", root)] == [(1, 2, None)]
    assert capsys.readouterr().err == ""
    # unknown dates: session = rank of the date, compared as numbers, said in one warning line
    folder = root / "ExtractedFeatures"
    shutil.copy(folder / "1_20131030.mat", folder / "1_20200101.mat")
    (folder / "1_20131030.mat").rename(folder / "1_20191231.mat")
    assert [(r.session, r.features.name) for r in readers.find_recordings("SEED", root)] == [(1, "1_20191231.mat"), (2, "1_20200101.mat")]
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("warning: 2 SEED file(s) dated outside the session table") and "numbered by date rank" in line
    assert f"{folder / '1_20191231.mat'} (subject 1, made session 1; known dates 20131027, 20131030, 20131107)" in line
    assert f"{folder / '1_20200101.mat'} (subject 1, made session 2;" in line


def test_find_recordings_extracted_features_1s(tmp_path):
    root = synthetic.write_seed(tmp_path / "SEED", subjects=(3,), sessions=(1,), trial_fraction=FRACTION)
    (root / "ExtractedFeatures").rename(root / "ExtractedFeatures_1s")
    (recording,) = readers.find_recordings("SEED", root)
    assert recording.features == root / "ExtractedFeatures_1s" / "3_20140603.mat" and recording.raw is not None
    assert readers.read_labels("SEED", root)[1].tolist() == list(datasets.get("SEED").trial_labels[1])


def test_find_recordings_seed_iv_session_folders(seed_iv_tree):
    recordings = readers.find_recordings("SEED-IV", seed_iv_tree)
    assert [(r.subject, r.session) for r in recordings] == [(1, 1), (1, 2), (10, 1), (10, 2)]
    assert recordings[1].features == seed_iv_tree / "eeg_feature_smooth" / "2" / "1_20161125.mat"
    assert recordings[1].raw == seed_iv_tree / "eeg_raw_data" / "2" / "1_20161125.mat"


def test_find_recordings_seed_files_named_after_subjects(tmp_path):
    """Copies that name files after the subject (dujingcheng_20131027.mat): subjects 1 and 7 were
    recorded on the same days, so only the name tells them apart; a number and a name for one
    recording is an error, not a silent choice."""
    root = synthetic.write_seed(tmp_path / "SEED", subjects=(1, 7), sessions=(1, 2), trial_fraction=FRACTION)
    for folder in ("ExtractedFeatures", "Preprocessed_EEG"):
        for path in (root / folder).glob("[17]_*.mat"):
            name = {"1": "dujingcheng", "7": "penghuiling"}[path.name[0]]
            path.rename(path.with_name(name + path.name[1:]))
    recordings = readers.find_recordings("SEED", root)
    assert [(r.subject, r.session, r.raw.name, r.prefix) for r in recordings] == [
        (1, 1, "dujingcheng_20131027.mat", "djc"), (1, 2, "dujingcheng_20131030.mat", "djc"),
        (7, 1, "penghuiling_20131027.mat", "phl"), (7, 2, "penghuiling_20131030.mat", "phl")]
    assert recordings[2].features == root / "ExtractedFeatures" / "penghuiling_20131027.mat"
    assert list(readers.read_raw(recordings[2].raw, recordings[2].prefix)) == list(range(1, 16))
    with pytest.raises(DataError, match="keys phl_eeg<trial>, but the subject named in the file name has djc_eeg"):
        readers.read_raw(recordings[2].raw, "djc")
    shutil.copy(root / "ExtractedFeatures" / "dujingcheng_20131027.mat", root / "ExtractedFeatures" / "1_20131027.mat")
    with pytest.raises(DataError, match="holds the same recording .subject 1, 20131027.; keep one"):
        readers.find_recordings("SEED", root)


def test_read_compressed_mat(seed_tree, tmp_path):
    """MATLAB's default save compresses its variables; the synthetic files are written uncompressed."""
    for folder, read in (("ExtractedFeatures", lambda p: readers.read_features(p, "de_LDS")), ("Preprocessed_EEG", readers.read_raw)):
        source = seed_tree / folder / "2_20140404.mat"
        arrays = {k: v for k, v in scipy.io.loadmat(source).items() if not k.startswith("__")}
        scipy.io.savemat(tmp_path / "c.mat", arrays, do_compression=True)
        assert (tmp_path / "c.mat").stat().st_size < source.stat().st_size
        original, compressed = read(source), read(tmp_path / "c.mat")
        assert list(compressed) == list(original) and all(np.array_equal(compressed[i], original[i]) for i in original)


@pytest.mark.parametrize("damage, message", [
    ("no_root", "dataset folder not found"),
    ("no_folders", "no ExtractedFeatures/ or ExtractedFeatures_1s/ or Preprocessed_EEG/"),
    ("empty", "no recordings"),
    ("raw_missing", "Preprocessed_EEG/10_20131204.mat: missing, but"),
])
def test_find_recordings_errors(seed_tree, tmp_path, damage, message):
    root = tmp_path / "SEED"
    if damage != "no_root":
        shutil.copytree(seed_tree, root)
    if damage == "no_folders":
        for folder in ("ExtractedFeatures", "Preprocessed_EEG"):
            shutil.rmtree(root / folder)
    if damage == "empty":
        for path in (root / "Preprocessed_EEG").glob("*_*.mat"):
            if path.is_file():
                path.unlink()
    if damage == "raw_missing":
        (root / "Preprocessed_EEG" / "10_20131204.mat").unlink()
    with pytest.raises(DataError, match=message):
        readers.find_recordings("SEED", root)


def test_find_recordings_seed_more_files_than_sessions(tmp_path, capsys):
    """A recording copied under another date: ranking the dates would silently shift sessions 2 and 3."""
    root = synthetic.write_seed(tmp_path / "SEED", subjects=(1,), trial_fraction=FRACTION, raw=False)
    folder = root / "ExtractedFeatures"
    shutil.copy(folder / "1_20131027.mat", folder / "1_20131028.mat")
    message = (f"{folder}: subject 1 has 4 files (1_20131027.mat, 1_20131028.mat, 1_20131030.mat, 1_20131107.mat); "
               f"SEED has 3 sessions per subject, one file each")
    with pytest.raises(DataError, match=re.escape(message)):
        readers.find_recordings("SEED", root)
    # a partial download with the copy: still read, by date rank, and the copy is named in a warning
    (folder / "1_20131030.mat").unlink()
    recordings = readers.find_recordings("SEED", root)
    assert [(r.session, r.features.name) for r in recordings] == [
        (1, "1_20131027.mat"), (2, "1_20131028.mat"), (3, "1_20131107.mat")]
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("warning: 1 SEED file(s)") and f"{folder / '1_20131028.mat'} (subject 1, made session 2;" in line
    # a partial download of known dates: sessions from the table, no warning
    (folder / "1_20131028.mat").unlink()
    assert [(r.session, r.features.name) for r in readers.find_recordings("SEED", root)] == [
        (1, "1_20131027.mat"), (3, "1_20131107.mat")]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("folders, message", [
    (("01",), "{f}/01 and {f}/1: both are session 1; expected one folder per session (1/, 2/, 3/)"),
    (("002",), "{f}/002 and {f}/2: both are session 2; expected one folder per session"),
    (("4",), "{f}/4: session folder 4, but SEED-IV has sessions 1, 2, 3 (expected folders 1/, 2/, 3/)"),
    (("0",), "{f}/0: session folder 0, but SEED-IV has sessions 1, 2, 3"),
])
def test_find_recordings_seed_iv_session_folder_errors(seed_iv_tree, tmp_path, folders, message):
    root = shutil.copytree(seed_iv_tree, tmp_path / "SEED_IV")
    features = root / "eeg_feature_smooth"
    for name in folders:
        shutil.copytree(features / str(int(name) if int(name) in datasets.SEED.sessions else 1), features / name)
    with pytest.raises(DataError, match=re.escape(message.format(f=features))):
        readers.find_recordings("SEED-IV", root)


def test_find_recordings_seed_iv_stray_folders_ignored(seed_iv_tree, tmp_path):
    root = shutil.copytree(seed_iv_tree, tmp_path / "SEED_IV")
    for name in ("notes", "1_old", "²"):
        (root / "eeg_feature_smooth" / name).mkdir()
    assert [(r.subject, r.session) for r in readers.find_recordings("SEED-IV", root)] == [(1, 1), (1, 2), (10, 1), (10, 2)]


# ----------------------------------------------------------------------------- labels


def write_label_mats(root: Path, *labels) -> Path:
    """SEED label.mat files, (1, 15) int32 as the lab ships them: ExtractedFeatures/ gets the first,
    Preprocessed_EEG/ the second."""
    for folder, values in zip(("ExtractedFeatures", "Preprocessed_EEG"), labels):
        (root / folder).mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / folder / "label.mat", {"label": np.array([values], dtype=np.int32)})
    return root


def write_readme(root: Path, *lines: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ReadMe.txt").write_text("0: neutral, 1: sad, 2: fear, 3: happy\n" + "\n".join(lines) + "\n")
    return root


def iv_line(session: int, labels=None) -> str:
    return f"session{session}_label = [{','.join(map(str, labels or datasets.get('SEED-IV').trial_labels[session]))}];"


def test_seed_label_mats_must_agree(tmp_path, capsys):
    good = list(datasets.SEED.label_values)
    root = write_label_mats(tmp_path / "SEED", good, good)
    assert readers.read_labels("SEED", root)[2].tolist() == list(datasets.get("SEED").trial_labels[2])
    bad = good.copy()
    bad[3], bad[6] = 1, 0  # trials 4 and 7: -1 in the real file
    write_label_mats(root, good, bad)
    message = (f"{root / 'ExtractedFeatures' / 'label.mat'} and {root / 'Preprocessed_EEG' / 'label.mat'} disagree on "
               f"2 of 15 trials (trial 4: -1 vs 1); expected the same labels in both")
    with pytest.raises(DataError, match=re.escape(message)):
        readers.read_labels("SEED", root)
    # the newer release's folder name counts too
    (root / "ExtractedFeatures").rename(root / "ExtractedFeatures_1s")
    with pytest.raises(DataError, match=re.escape(f"{root / 'ExtractedFeatures_1s' / 'label.mat'} and ")):
        readers.read_labels("SEED", root)
    # one label.mat alone is read as before
    (root / "Preprocessed_EEG" / "label.mat").unlink()
    assert readers.read_labels("SEED", root)[1].tolist() == list(datasets.get("SEED").trial_labels[1])
    assert capsys.readouterr().err == ""


def test_seed_label_mat_of_one_class(tmp_path, capsys):
    root = write_label_mats(tmp_path / "SEED", [1] * 15, [1] * 15)
    path = root / "ExtractedFeatures" / "label.mat"
    message = (f"{path}: key label (every session): all 15 trials have label 1 (positive); expected trials of the "
               f"3 SEED classes (-1 negative, 0 neutral, 1 positive)")
    with pytest.raises(DataError, match=re.escape(message)):
        readers.read_labels("SEED", root)
    # two classes: usable, said in one warning line
    two = [1, 0] * 7 + [1]
    write_label_mats(root, two, two)
    assert readers.read_labels("SEED", root)[1].tolist() == [v + 1 for v in two]
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f"warning: {path}: key label (every session) has no trial labelled -1 (negative); "
                    f"SEED has 3 classes per session")


def test_seed_iv_readme_session_given_twice(tmp_path, capsys):
    root = write_readme(tmp_path / "SEED_IV", iv_line(1), iv_line(2), iv_line(3), iv_line(2))
    labels = readers.read_labels("SEED-IV", root)
    assert all(labels[s].tolist() == list(datasets.get("SEED-IV").trial_labels[s]) for s in datasets.SEED.sessions)
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [
        f"warning: {root / 'ReadMe.txt'}: session2_label and session2_label give the same labels twice; using them once"]
    other = [3, 2, 1, 0] * 6
    write_readme(root, iv_line(1), iv_line(2), iv_line(3), iv_line(3, other))
    message = (f"{root / 'ReadMe.txt'}: session 3 labelled twice, by session3_label and session3_label, differently "
               f"(trial 1: 1 vs 3); expected one line per session")
    with pytest.raises(DataError, match=re.escape(message)):
        readers.read_labels("SEED-IV", root)
    write_readme(root, iv_line(1), iv_line(2), iv_line(3), iv_line(1).replace("session1", "session01", 1))
    readers.read_labels("SEED-IV", root)  # session01_label is session 1 again, with the same labels: a warning
    assert "session1_label and session01_label give the same labels twice" in capsys.readouterr().err
    write_readme(root, iv_line(1), iv_line(2), iv_line(3), iv_line(1, other).replace("session1", "session01", 1))
    with pytest.raises(DataError, match=re.escape("session 1 labelled twice, by session1_label and session01_label")):
        readers.read_labels("SEED-IV", root)


def test_seed_iv_readme_session_out_of_range(tmp_path):
    extra = iv_line(3).replace("session3", "session4", 1)
    root = write_readme(tmp_path / "SEED_IV", iv_line(1), iv_line(2), iv_line(3), extra)
    message = f"{root / 'ReadMe.txt'}: session4_label: SEED-IV has sessions 1, 2, 3 (expected session1_label .. session3_label)"
    with pytest.raises(DataError, match=re.escape(message)):
        readers.read_labels("SEED-IV", root)


def test_seed_iv_readme_session_of_one_class(tmp_path, capsys):
    root = write_readme(tmp_path / "SEED_IV", iv_line(1), iv_line(2, [0] * 24), iv_line(3))
    message = (f"{root / 'ReadMe.txt'}: session2_label: all 24 trials have label 0 (neutral); expected trials of the "
               f"4 SEED-IV classes (0 neutral, 1 sad, 2 fear, 3 happy)")
    with pytest.raises(DataError, match=re.escape(message)):
        readers.read_labels("SEED-IV", root)
    # classes missing from sessions 1 and 3: usable, said in one warning line naming both
    write_readme(root, iv_line(1, [0, 1] * 12), iv_line(2), iv_line(3, [3, 2, 1] * 8))
    assert readers.read_labels("SEED-IV", root)[1].tolist() == [0, 1] * 12
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f"warning: {root / 'ReadMe.txt'}: session1_label has no trial labelled 2 (fear), 3 (happy); "
                    f"session3_label has no trial labelled 0 (neutral); SEED-IV has 4 classes per session")


# ----------------------------------------------------------------------------- readers


def test_read_raw_trial_from_key_not_position(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"abc_eeg10": rng.normal(size=(62, 30)), "abc_eeg2": rng.normal(size=(62, 20)),
              "abc_eeg1": rng.normal(size=(62, 10))}
    arrays.update({f"abc_eeg{i}": rng.normal(size=(62, 5)) for i in range(3, 10)})
    scipy.io.savemat(tmp_path / "1_20200101.mat", arrays)  # keys on disk in this (insertion) order
    assert [name for name, _, _ in scipy.io.whosmat(tmp_path / "1_20200101.mat")][:2] == ["abc_eeg10", "abc_eeg2"]
    raw = readers.read_raw(tmp_path / "1_20200101.mat")
    assert list(raw) == list(range(1, 11))
    for i in range(1, 11):
        assert np.array_equal(raw[i], arrays[f"abc_eeg{i}"])


def test_read_features_trial_from_key(tmp_path):
    arrays = {f"de_LDS{i}": np.full((62, i, 5), float(i)) for i in (10, 2, 1, 3, 4, 5, 6, 7, 8, 9)}
    arrays["psd_LDS1"] = np.zeros((62, 1, 5))
    scipy.io.savemat(tmp_path / "f.mat", arrays)
    features = readers.read_features(tmp_path / "f.mat", "de_LDS")
    assert list(features) == list(range(1, 11))
    assert all(features[i].shape == (62, i, 5) and features[i][0, 0, 0] == i for i in features)


def is_hdf5(path: Path) -> bool:
    with open(path, "rb") as fh:
        return readers._is_hdf5(fh)


def test_read_v73_hdf5(seed_tree, tmp_path):
    source = seed_tree / "ExtractedFeatures" / "2_20140404.mat"
    original = readers.read_features(source, "de_LDS")
    write_v73(tmp_path / "2_20140404.mat", {f"de_LDS{i}": a for i, a in original.items()})
    assert h5py.is_hdf5(tmp_path / "2_20140404.mat") and is_hdf5(tmp_path / "2_20140404.mat")
    assert not h5py.is_hdf5(source) and not is_hdf5(source)
    with h5py.File(tmp_path / "plain.h5", "w") as f:        # no MATLAB header: the signature at byte 0
        f["x"] = np.zeros(3)
    assert is_hdf5(tmp_path / "plain.h5")
    copy = readers.read_features(tmp_path / "2_20140404.mat", "de_LDS")
    assert list(copy) == list(original) and all(np.array_equal(copy[i], original[i]) for i in original)
    raw = readers.read_raw(seed_tree / "Preprocessed_EEG" / "2_20140404.mat")
    write_v73(tmp_path / "raw.mat", {f"jl_eeg{i}": a for i, a in raw.items()})
    assert all(np.array_equal(readers.read_raw(tmp_path / "raw.mat")[i], raw[i]) for i in raw)


def test_read_labels(seed_tree, seed_iv_tree, tmp_path, capsys):
    labels = readers.read_labels("SEED", seed_tree)
    assert sorted(labels) == [1, 2, 3]
    assert labels[1].dtype == np.int64 and labels[1].tolist() == [v + 1 for v in datasets.SEED.label_values]
    labels = readers.read_labels("SEED-IV", seed_iv_tree)
    assert all(labels[s].tolist() == list(datasets.get("SEED-IV").trial_labels[s]) for s in datasets.SEED.sessions)
    assert capsys.readouterr().out == ""
    root = shutil.copytree(seed_iv_tree, tmp_path / "SEED_IV")
    (root / "ReadMe.txt").write_text("session1_label = [3,2,1,0,3,2,1,0,3,2,1,0,3,2,1,0,3,2,1,0,3,2,1,0];\n")
    labels = readers.read_labels("SEED-IV", root)
    assert labels[1].tolist()[:4] == [3, 2, 1, 0] and labels[2].tolist() == list(datasets.get("SEED-IV").trial_labels[2])
    assert capsys.readouterr().out.count("note:") == 1
    (root / "ReadMe.txt").unlink()
    labels = readers.read_labels("SEED-IV", root)
    assert all(labels[s].tolist() == list(datasets.get("SEED-IV").trial_labels[s]) for s in datasets.SEED.sessions)
    out = capsys.readouterr().out
    assert out.count("note:") == 1 and "no ReadMe.txt" in out


@pytest.mark.parametrize("arrays, message", [
    ({"de_LDS1": np.zeros((61, 4, 5))}, r"key de_LDS1: expected \(62, T, 5\)"),
    ({"de_LDS1": np.zeros((62, 5, 4))}, r"key de_LDS1: expected \(62, T, 5\).*got shape \(62, 5, 4\)"),
    ({"de_LDS1": np.full((62, 4, 5), np.nan)}, "key de_LDS1: 1240 NaN/Inf"),
    ({"de_LDS1": np.zeros((62, 4, 5)), "de_LDS3": np.zeros((62, 4, 5))}, "key de_LDS2 missing"),
    ({"de_movingAve1": np.zeros((62, 4, 5))}, "no de_LDS<trial> keys"),
])
def test_read_features_errors(tmp_path, arrays, message):
    scipy.io.savemat(tmp_path / "1_20200101.mat", arrays)
    with pytest.raises(DataError, match=message):
        readers.read_features(tmp_path / "1_20200101.mat", "de_LDS")


def test_read_raw_errors(tmp_path):
    scipy.io.savemat(tmp_path / "a.mat", {"ab_eeg1": np.zeros((62, 10)), "cd_eeg2": np.zeros((62, 10))})
    with pytest.raises(DataError, match="different prefixes"):
        readers.read_raw(tmp_path / "a.mat")
    scipy.io.savemat(tmp_path / "b.mat", {"ab_eeg1": np.zeros((10, 62))})
    with pytest.raises(DataError, match=r"b.mat: key ab_eeg1: expected \(62, N\)"):
        readers.read_raw(tmp_path / "b.mat")
    (tmp_path / "c.mat").write_text("this is text, not MATLAB\n")
    with pytest.raises(DataError, match="c.mat: not a readable MATLAB .mat file"):
        readers.read_raw(tmp_path / "c.mat")


# ----------------------------------------------------------------------------- hostile .mat files (issue 33)

GiB = 2**30


def _element(mtype: int, data: bytes) -> bytes:
    return struct.pack("<II", mtype, len(data)) + data + b"\0" * (-len(data) % 8)


def write_v5_compressed_zeros(path: Path, name: str, shape: tuple, chunk: int = 1 << 20) -> None:
    """A MATLAB v5 .mat of one double array of `shape`, zeros, compressed as MATLAB's default save writes it
    (miCOMPRESSED): a few hundred kB that inflate to prod(shape) * 8 bytes. Written by hand, streaming, so that
    the test never holds the array."""
    n = math.prod(shape) * 8
    head = (_element(6, struct.pack("<II", 6, 0))                   # array flags: mxDOUBLE_CLASS
            + _element(5, struct.pack(f"<{len(shape)}i", *shape))   # dimensions
            + _element(1, name.encode()))                           # name
    z = zlib.compressobj(1)
    body = [z.compress(struct.pack("<II", 14, len(head) + 8 + n) + head + struct.pack("<II", 9, n))]  # miMATRIX, miDOUBLE
    zeros = bytes(chunk)
    for start in range(0, n, chunk):
        body.append(z.compress(zeros[:min(chunk, n - start)]))
    body.append(z.flush())
    data = b"".join(body)
    header = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024".ljust(116, b" ")
    path.write_bytes(header + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM" + struct.pack("<II", 15, len(data)) + data)


def test_a_hand_written_v5_file_is_what_matlab_writes(tmp_path):
    write_v5_compressed_zeros(tmp_path / "f.mat", "de_LDS1", (62, 4, 5))
    assert scipy.io.whosmat(tmp_path / "f.mat") == [("de_LDS1", (62, 4, 5), "double")]
    assert np.array_equal(readers.read_features(tmp_path / "f.mat", "de_LDS")[1], np.zeros((62, 4, 5)))


def _external(f: h5py.File, name: str, tmp_path: Path) -> None:
    """Replace dataset `name` by one of the same shape whose values lie in a raw file outside the .mat."""
    shape, secret = f[name].shape, tmp_path / "secret.bin"
    np.full(shape, 7.0).tofile(secret)      # any local file the user can read
    del f[name]
    f.create_dataset(name, shape=shape, dtype="f8", external=[(str(secret), 0, secret.stat().st_size)])


def _virtual(f: h5py.File, name: str, tmp_path: Path) -> None:
    shape = f[name].shape
    with h5py.File(tmp_path / "source.h5", "w") as source:
        source.create_dataset("x", data=np.full(shape, 7.0))
    layout = h5py.VirtualLayout(shape=shape, dtype="f8")
    layout[...] = h5py.VirtualSource(str(tmp_path / "source.h5"), "x", shape=shape)
    del f[name]
    f.create_virtual_dataset(name, layout)


def _declared(f: h5py.File, name: str, shape: tuple, chunks: tuple, maxshape=None) -> None:
    """Replace dataset `name` by a compressed, chunked one of `shape` (HDF5's order) whose chunks are never
    written: a file of a few kB declaring prod(shape) * 8 bytes."""
    del f[name]
    f.create_dataset(name, shape=shape, dtype="f8", chunks=chunks, compression="gzip", maxshape=maxshape)


# One hostile v7.3 feature file of each kind (de_LDS1 replaced); each is refused before any value is read.
HOSTILE_V73 = {
    "external-storage": (lambda f, tmp: _external(f, "de_LDS1", tmp),
                         "key de_LDS1: its values lie in other files (external storage), which are not read"),
    "virtual-storage": (lambda f, tmp: _virtual(f, "de_LDS1", tmp),
                        "key de_LDS1: its values lie in other files (virtual storage)"),
    "a-soft-link": (lambda f, tmp: (f.move("de_LDS1", "elsewhere"), f.__setitem__("de_LDS1", h5py.SoftLink("/elsewhere"))),
                    "key de_LDS1 is a SoftLink; links are not followed"),
    "an-external-link": (lambda f, tmp: (f.__delitem__("de_LDS1"), f.__setitem__(
        "de_LDS1", h5py.ExternalLink(str(tmp / "other.h5"), "/x"))), "key de_LDS1 is a ExternalLink"),
    "a-declared-1-GB-dataset": (lambda f, tmp: _declared(f, "de_LDS1", (5, 400_000, 62), (5, 1000, 62)),
                                ("key de_LDS1: declares shape (62, 400000, 5) (124000000 values), more than the 558000 "
                                 "(62 electrodes x 1800 windows x 5 bands) it can hold; not read")),
    "a-chunk-of-1-GB": (lambda f, tmp: _declared(f, "de_LDS1", (5, 4, 62), (5, 400_000, 62), (5, None, 62)),
                        "key de_LDS1: stored in chunks of shape (62, 400000, 5)"),
    "text": (lambda f, tmp: (f.__delitem__("de_LDS1"), f.create_dataset("de_LDS1", data=np.array([b"abc"] * 3))),
             "key de_LDS1: stored as |S3, expected real numbers"),
}


def _hostile_v73(seed_tree: Path, path: Path, hostile: str, tmp_path: Path) -> None:
    original = readers.read_features(seed_tree / "ExtractedFeatures" / "2_20140404.mat", "de_LDS")
    write_v73(path, {f"de_LDS{i}": a for i, a in original.items()})
    with h5py.File(path, "r+") as f:
        HOSTILE_V73[hostile][0](f, tmp_path)


@pytest.mark.parametrize("hostile", HOSTILE_V73)
def test_a_hostile_v73_file_is_refused_before_reading(seed_tree, tmp_path, hostile):
    path = tmp_path / "2_20140404.mat"
    _hostile_v73(seed_tree, path, hostile, tmp_path)
    with pytest.raises(DataError) as refused:
        readers.read_features(path, "de_LDS")
    assert str(refused.value).startswith(f"{path}: ") and HOSTILE_V73[hostile][1] in str(refused.value), str(refused.value)


def test_chunked_compressed_v73_within_bounds_reads(seed_tree, tmp_path):
    """MATLAB's -v7.3 stores arrays chunked and compressed: that keeps working when the sizes fit."""
    original = readers.read_features(seed_tree / "ExtractedFeatures" / "2_20140404.mat", "de_LDS")
    path = tmp_path / "2_20140404.mat"
    write_v73(path, {})
    with h5py.File(path, "r+") as f:
        for i, a in original.items():
            f.create_dataset(f"de_LDS{i}", data=a.T, chunks=(5, 2, 62), compression="gzip", shuffle=True)
    copy = readers.read_features(path, "de_LDS")
    assert list(copy) == list(original) and all(np.array_equal(copy[i], original[i]) for i in original)


@pytest.mark.parametrize("variables, message", [
    ({"de_LDS1": (62, 60_000, 5)}, "key de_LDS1: declares shape (62, 60000, 5) (18600000 values), more than the 558000"),
    ({"psd_LDS1": (62, 100_000, 5)}, ("key psd_LDS1: declares shape (62, 100000, 5) (31000000 values), more than "
                                      "the 22320000 (62 electrodes x 1800 s at 200 Hz)")),
])
def test_a_v5_file_declaring_a_huge_variable_is_refused_before_reading(tmp_path, variables, message):
    """A compressed v5 variable inflates to what its header declares (149 MB and 248 MB here, from a file under
    2 MB): refused from its declared shape (scipy.io.whosmat), read or not (scipy decodes every variable)."""
    (name, shape), = variables.items()
    write_v5_compressed_zeros(tmp_path / "f.mat", name, shape)
    assert (tmp_path / "f.mat").stat().st_size < 2 * 2**20
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'f.mat'}: {message}")):
        readers.read_features(tmp_path / "f.mat", "de_LDS")


def test_a_v5_cell_or_struct_is_refused(tmp_path):
    """What a cell array or struct holds is not in its declared shape: these files hold arrays of numbers only."""
    scipy.io.savemat(tmp_path / "f.mat", {"de_LDS1": np.zeros((62, 4, 5)), "notes": np.array([1, "a"], dtype=object)})
    with pytest.raises(DataError, match=r"f.mat: key notes: a MATLAB cell, whose size cannot be checked before it is read"):
        readers.read_features(tmp_path / "f.mat", "de_LDS")


def test_a_linked_mat_is_followed_and_a_fifo_refused(seed_tree, tmp_path):
    """The dataset folder is the user's own copy: a .mat linked to a shared copy is read (the link is followed on
    purpose); a FIFO in a file's place is refused by its type, without waiting for a writer."""
    source = seed_tree / "ExtractedFeatures" / "2_20140404.mat"
    (tmp_path / "linked.mat").symlink_to(source)
    assert list(readers.read_features(tmp_path / "linked.mat", "de_LDS")) == list(range(1, 16))
    os.mkfifo(tmp_path / "fifo.mat")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'fifo.mat'}: a FIFO, not a regular file$"):
        readers.read_features(tmp_path / "fifo.mat", "de_LDS")


def bounded_cli(*args: str, memory: int = 3 * GiB, file_size: int = 64 * 2**20) -> subprocess.CompletedProcess:
    """run_cli with the address space and the size of any file written bounded: code reading what a hostile
    file declares fails here instead of taking the machine's memory."""
    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          preexec_fn=limits)


@pytest.mark.parametrize("hostile", ["v73-external-storage", "v73-a-declared-1-GB-dataset", "v5-a-declared-149-MB-variable"])
def test_preprocess_refuses_a_hostile_mat_in_one_line(tmp_path, hostile):
    """Preprocess.py on a feature file that would copy another local file into de.npy (HDF5 external storage)
    or declares what it does not hold: exit 1, one error line naming the file, no traceback, nothing written."""
    root = synthetic.write_seed(tmp_path / "SEED", subjects=(1,), sessions=(1,), trial_fraction=FRACTION, raw=False)
    path = root / "ExtractedFeatures" / "1_20131027.mat"
    if hostile.startswith("v73-"):
        arrays = readers.read_features(path, "de_LDS")
        write_v73(path, {f"de_LDS{i}": a for i, a in arrays.items()})
        with h5py.File(path, "r+") as f:
            HOSTILE_V73[hostile[4:]][0](f, tmp_path)
        expected = HOSTILE_V73[hostile[4:]][1]
    else:
        write_v5_compressed_zeros(path, "de_LDS1", (62, 60_000, 5))
        expected = "key de_LDS1: declares shape (62, 60000, 5)"
    ini = dataset_ini(tmp_path, "SEED", root)
    p = bounded_cli("Preprocess.py", "-c", str(ini), "--no-maps")
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    lines = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and expected in lines[0], p.stderr
    assert not list((tmp_path / "pre").rglob("*.npy"))
