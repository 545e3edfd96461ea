"""Bad-input corpus: whatever a user feeds the two command lines, they fail cleanly.

    python -m pytest tests/test_bad_inputs.py -q

Each case copies a small synthetic tree (built once per module by synthetic.py and, for run.py,
Preprocess.py), breaks one thing (a file, a key, an INI value, an output folder) and runs
`Preprocess.main(["-c", <ini>])` or `run.main(...)` in this process (fast), or, for the cases in
COMMAND_LINE and those that must run without root's permission override, `python Preprocess.py -c
<ini>` as a subprocess. The contract:
  * in-process: one UserError whose message (as utils.cli_main prints it, on one line) holds the
    case's fragment, nothing on stderr; through the command line: exit code 1, stderr exactly one
    line `error: ...` holding the fragment, and no `Traceback` anywhere;
  * the dataset folder, preprocessed_root and result_path are exactly as before: no file added,
    removed, resized or touched (names, sizes and mtimes), no folder created.
A missing output folder is not an error: Preprocess.py and run.py create it (see
tests/test_resume.py, whose reference runs write into folders that do not exist yet).
"""
from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import scipy.io
import torch

from conftest import ROOT, TINY_MODEL, Payload, run_in_process, write_ini
from sst.data import synthetic

FEATURES, RAW = "ExtractedFeatures/1_20131027.mat", "Preprocessed_EEG/1_20131027.mat"  # SEED subject 1, session 1
IV_FEATURES = "eeg_feature_smooth/1/1_20160518.mat"  # SEED-IV subject 1, session 1


# ----------------------------------------------------------------------------- the trees


@dataclass(frozen=True)
class Trees:
    seed: Path       # SEED subject 1, session 1: the Preprocess.py cases
    seed_iv: Path    # SEED-IV subject 1, sessions 1 and 2
    seed_two: Path   # SEED subjects 1 and 2, session 1 ...
    pre_two: Path    # ... preprocessed at 16 x 16: the run.py cases


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> Trees:
    import Preprocess
    from sst.config import load_config

    base = tmp_path_factory.mktemp("trees")
    seed = synthetic.write_seed(base / "SEED", subjects=(1,), sessions=(1,), trial_fraction=0.03)
    seed_iv = synthetic.write_seed_iv(base / "SEED_IV", subjects=(1,), sessions=(1, 2), trial_fraction=0.03)
    seed_two = synthetic.write_seed(base / "SEED_two", subjects=(1, 2), sessions=(1,), trial_fraction=0.05)
    ini = write_ini(base / "two.ini", path={"dataset_root": seed_two, "preprocessed_root": base / "pre_two",
                                            "result_path": base / "unused"}, data={"input_width": 16})
    Preprocess.preprocess(load_config(ini))
    return Trees(seed, seed_iv, seed_two, base / "pre_two")


# ----------------------------------------------------------------------------- one case


@dataclass
class Workspace:
    """What one case runs on; its setup function breaks something in it."""

    trees: Trees
    tmp: Path
    data: Path                 # [path] dataset_root
    pre: Path                  # [path] preprocessed_root
    res: Path                  # [path] result_path
    base: str = "SEED.ini"
    ini: dict = field(default_factory=dict)       # {section: {key: value}} changed in the INI file
    remove: list = field(default_factory=list)    # (section, key or None) taken out of the INI file
    ini_text: str | None = None                   # replaces the whole INI file
    ini_path: Path | None = None                  # the INI file to pass (default: written by the harness)
    args: list = field(default_factory=list)      # more command-line arguments
    prefix: list = field(default_factory=list)    # runs the command under this one (setpriv)
    watch: list = field(default_factory=list)     # more paths that must stay untouched


@dataclass(frozen=True)
class Case:
    id: str
    script: str                          # Preprocess.py or run.py
    tree: str                            # which of Trees is copied to dataset_root
    setup: Callable[[Workspace], None]
    expected: str                        # a fragment of the error line; {data} {pre} {res} {ini} {tmp} are filled in


CASES: list = []


def case(case_id: str, script: str, expected: str, tree: str = "seed"):
    def register(setup):
        CASES.append(pytest.param(Case(case_id, script, tree, setup, expected), id=case_id))
        return setup
    return register


def edit_mat(path: Path, change: Callable[[dict], None]) -> None:
    """Rewrite a .mat file with change(arrays) applied, the other keys kept in their order."""
    arrays = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    change(arrays)
    scipy.io.savemat(path, arrays)


def put(key: str, index: tuple, value: float) -> Callable[[dict], None]:
    return lambda a: a[key].__setitem__(index, value)


# Root ignores permissions: the command then runs without the capability that lets it (CAP_DAC_OVERRIDE).
DROP_ROOT_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def read_only(w: Workspace, path: Path) -> None:
    """chmod a folder read-only, so that it binds the command even when the tests run as root."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.access(path, os.W_OK):  # root
        probe = [*DROP_ROOT_OVERRIDE, sys.executable, "-c", f"import os, sys; sys.exit(os.access({str(path)!r}, os.W_OK))"]
        if shutil.which("setpriv") is None or subprocess.run(probe, capture_output=True, timeout=60).returncode != 0:
            path.chmod(stat.S_IRWXU)
            pytest.skip("running as root without setpriv: chmod cannot make a folder read-only")
        w.prefix = DROP_ROOT_OVERRIDE


def unreadable(w: Workspace, path: Path) -> None:
    """chmod a file unreadable, so that it binds the command even when the tests run as root."""
    path.chmod(0)
    if os.access(path, os.R_OK):  # root
        check = f"import os, sys; sys.exit(os.access({str(path)!r}, os.R_OK))"
        probe = [*DROP_ROOT_OVERRIDE, sys.executable, "-c", check]
        if shutil.which("setpriv") is None or subprocess.run(probe, capture_output=True, timeout=60).returncode != 0:
            pytest.skip("running as root without setpriv: chmod cannot make a file unreadable")
        w.prefix = DROP_ROOT_OVERRIDE


# ----------------------------------------------------------------------------- Preprocess.py: the dataset folder

@case("dataset-folder-missing", "Preprocess.py", "{data}: dataset folder not found (set [path] dataset_root")
def _(w):
    shutil.rmtree(w.data)


@case("empty-folder", "Preprocess.py",
      "{data}: no ExtractedFeatures/ or ExtractedFeatures_1s/ or Preprocessed_EEG/ inside; expected the SEED folder")
def _(w):
    shutil.rmtree(w.data)
    w.data.mkdir()


@case("strays-only", "Preprocess.py", "{data}/ExtractedFeatures: no recordings (expected files named <subject>_<YYYYMMDD>.mat)")
def _(w):
    for folder in ("ExtractedFeatures", "Preprocessed_EEG"):
        (w.data / folder / "1_20131027.mat").unlink()
        for stray in (".DS_Store", "notes.mat", "1_2013.mat", "1_20131027.mat.bak"):
            (w.data / folder / stray).write_bytes(b"stray")  # label.mat and readme.txt are there already


@case("features-folder-missing", "Preprocess.py",
      "{data}/ExtractedFeatures: not found, needed for [data] feature = de_LDS")
def _(w):
    shutil.rmtree(w.data / "ExtractedFeatures")


@case("de_raw-without-raw-folder", "Preprocess.py",
      "{data}/Preprocessed_EEG: not found, needed for [data] feature = de_raw")
def _(w):
    shutil.rmtree(w.data / "Preprocessed_EEG")
    w.ini = {"data": {"feature": "de_raw"}}


@case("raw-recording-missing", "Preprocess.py", "{data}/Preprocessed_EEG/1_20131027.mat: missing, but {data}/" + FEATURES)
def _(w):
    (w.data / RAW).rename(w.data / "Preprocessed_EEG" / "1_20131030.mat")  # now session 2's file


@case("subject-not-found", "Preprocess.py", "{data}: no recording of subject 7 (found subjects 1)")
def _(w):
    w.args = ["--subjects", "7"]


@case("session-not-found", "Preprocess.py", "{data}: no recording of session 3 (found sessions 1)")
def _(w):
    w.args = ["--sessions", "3"]


# ----------------------------------------------------------------------------- Preprocess.py: unreadable files

@case("truncated-mat", "Preprocess.py", "{data}/" + FEATURES + ": not a readable MATLAB .mat file")
def _(w):
    (w.data / FEATURES).write_bytes((w.data / FEATURES).read_bytes()[:-100])


@case("empty-mat", "Preprocess.py", "{data}/" + RAW + ": not a readable MATLAB .mat file")
def _(w):
    (w.data / RAW).write_bytes(b"")


@case("text-named-mat", "Preprocess.py", "{data}/" + RAW + ": not a readable MATLAB .mat file")
def _(w):
    (w.data / RAW).write_text("EEG exported as text\n1.0, 2.0, 3.0\n")


# ----------------------------------------------------------------------------- Preprocess.py: keys and shapes

@case("de_LDS-key-missing", "Preprocess.py", "{data}/" + FEATURES + ": key de_LDS7 missing (trials must be numbered 1..15)")
def _(w):
    edit_mat(w.data / FEATURES, lambda a: a.pop("de_LDS7"))


@case("de_LDS-last-trial-missing", "Preprocess.py",
      "{data}/" + FEATURES + ": 14 trials (de_LDS1..de_LDS14), expected 15, one per label")
def _(w):
    edit_mat(w.data / FEATURES, lambda a: a.pop("de_LDS15"))


@case("no-de_LDS-keys", "Preprocess.py", "{data}/" + FEATURES + ": no de_LDS<trial> keys (expected de_LDS1, de_LDS2, ...)")
def _(w):
    edit_mat(w.data / FEATURES, lambda a: [a.pop(f"de_LDS{k}") for k in range(1, 16)])


@case("raw-trial-missing", "Preprocess.py", "{data}/" + RAW + ": key djc_eeg5 missing (trials must be numbered 1..15)")
def _(w):
    edit_mat(w.data / RAW, lambda a: a.pop("djc_eeg5"))


@case("trial-count-raw-16-features-15", "Preprocess.py", "{data}/" + RAW + ": 16 trials (*_eeg1..*_eeg16), expected 15, one per label")
def _(w):
    edit_mat(w.data / RAW, lambda a: a.update(djc_eeg16=a["djc_eeg15"]))


@case("raw-trial-too-short", "Preprocess.py",
      "{data}/" + RAW + ": trial 3 (key *_eeg3) has 700 samples at 200 Hz, but {data}/" + FEATURES + " key de_LDS3 has 6 windows")
def _(w):
    edit_mat(w.data / RAW, lambda a: a.update(djc_eeg3=a["djc_eeg3"][:, :700]))


@case("features-61-electrodes", "Preprocess.py",
      "{data}/" + FEATURES + ": key de_LDS2: expected (62, T, 5) real numbers (electrodes, windows, bands), got shape (61, 7, 5)")
def _(w):
    edit_mat(w.data / FEATURES, lambda a: a.update(de_LDS2=a["de_LDS2"][:61]))


@case("raw-61-electrodes", "Preprocess.py",
      "{data}/" + RAW + ": key djc_eeg4: expected (62, N) real numbers (electrodes, samples at 200 Hz), got shape (61, ")
def _(w):
    edit_mat(w.data / RAW, lambda a: a.update(djc_eeg4=a["djc_eeg4"][:61]))


@case("features-62x5xT", "Preprocess.py", "{data}/" + FEATURES + ": key de_LDS2: expected (62, T, 5) real numbers "
      "(electrodes, windows, bands), got shape (62, 5, 7)")
def _(w):
    edit_mat(w.data / FEATURES, lambda a: a.update(de_LDS2=a["de_LDS2"].transpose(0, 2, 1)))


@case("features-text", "Preprocess.py", "{data}/" + FEATURES + ": key de_LDS9: expected (62, T, 5) real numbers")
def _(w):
    edit_mat(w.data / FEATURES, lambda a: a.update(de_LDS9=np.array(["not numbers"])))


@case("features-nan", "Preprocess.py", "{data}/" + FEATURES + ": key de_LDS4: 1 NaN/Inf values (expected finite numbers)")
def _(w):
    edit_mat(w.data / FEATURES, put("de_LDS4", (0, 1, 2), np.nan))


@case("features-inf", "Preprocess.py", "{data}/" + FEATURES + ": key de_LDS11: 2 NaN/Inf values (expected finite numbers)")
def _(w):
    edit_mat(w.data / FEATURES, lambda a: a["de_LDS11"].__setitem__((5, slice(0, 2), 0), [np.inf, -np.inf]))


@case("features-beyond-float32", "Preprocess.py", "{data}/" + FEATURES + ": key de_LDS6: 1 values beyond")
def _(w):
    edit_mat(w.data / FEATURES, put("de_LDS6", (3, 0, 1), 1e300))


@case("raw-nan", "Preprocess.py", "{data}/" + RAW + ": key djc_eeg1: 1 NaN/Inf values (expected finite numbers)")
def _(w):
    edit_mat(w.data / RAW, put("djc_eeg1", (0, 0), np.nan))


@case("raw-inf", "Preprocess.py", "{data}/" + RAW + ": key djc_eeg2: 1 NaN/Inf values (expected finite numbers)")
def _(w):
    edit_mat(w.data / RAW, put("djc_eeg2", (3, 10), -np.inf))


@case("raw-prefixes-differ", "Preprocess.py", "{data}/" + RAW + ": keys with different prefixes (djc, xyz)")
def _(w):
    edit_mat(w.data / RAW, lambda a: a.update(xyz_eeg16=a.pop("djc_eeg15")))


# ----------------------------------------------------------------------------- Preprocess.py: labels

@case("label-mat-missing", "Preprocess.py", "{data}/ExtractedFeatures/label.mat: file not found")
def _(w):
    for folder in ("ExtractedFeatures", "Preprocessed_EEG"):
        (w.data / folder / "label.mat").unlink()


@case("label-mat-wrong-length", "Preprocess.py",
      "{data}/ExtractedFeatures/label.mat: key label: expected 15 values in -1/0/1, got shape (1, 14)")
def _(w):
    edit_mat(w.data / "ExtractedFeatures" / "label.mat", lambda a: a.update(label=a["label"][:, :14]))


@case("file-named-after-another-subject", "Preprocess.py",
      "{data}/Preprocessed_EEG/penghuiling_20131027.mat: keys djc_eeg<trial>, but the subject named in the file name "
      "has phl_eeg<trial> keys")
def _(w):   # subject 1's files named after subject 7, who was recorded on the same day
    for path in (w.data / FEATURES, w.data / RAW):
        path.rename(path.with_name("penghuiling_20131027.mat"))


@case("file-named-after-an-unknown-subject", "Preprocess.py",
      "{data}/ExtractedFeatures/nobody_20131027.mat: unknown subject 'nobody' in the file name (expected a subject "
      "number or one of dujingcheng, jianglin")
def _(w):
    (w.data / FEATURES).rename(w.data / FEATURES.replace("1_", "nobody_"))


@case("label-mat-bad-value", "Preprocess.py", "{data}/ExtractedFeatures/label.mat: key label: expected 15 values in -1/0/1")
def _(w):
    edit_mat(w.data / "ExtractedFeatures" / "label.mat", put("label", (0, 3), 2))


@case("label-mat-key-missing", "Preprocess.py", "{data}/ExtractedFeatures/label.mat: key label missing")
def _(w):
    edit_mat(w.data / "ExtractedFeatures" / "label.mat", lambda a: a.update(labels=a.pop("label")))


# ----------------------------------------------------------------------------- Preprocess.py: SEED-IV

@case("seed-iv-session-folder-missing", "Preprocess.py",
      "{data}/eeg_raw_data/2: session folder missing, but {data}/eeg_feature_smooth/2/1_20161125.mat exists", tree="seed_iv")
def _(w):
    shutil.rmtree(w.data / "eeg_raw_data" / "2")


@case("seed-iv-no-session-folders", "Preprocess.py",
      "{data}/eeg_feature_smooth: no session folders (expected 1/, 2/, 3/)", tree="seed_iv")
def _(w):
    for session in ("1", "2"):
        for path in (w.data / "eeg_feature_smooth" / session).iterdir():
            path.rename(w.data / "eeg_feature_smooth" / path.name)
        (w.data / "eeg_feature_smooth" / session).rmdir()


@case("seed-iv-two-files-in-session", "Preprocess.py",
      "{data}/eeg_feature_smooth/1: subject 1 has 2 files", tree="seed_iv")
def _(w):
    shutil.copy(w.data / IV_FEATURES, w.data / "eeg_feature_smooth" / "1" / "1_20160519.mat")


@case("seed-iv-readme-labels-short", "Preprocess.py",
      "{data}/ReadMe.txt: session2_label: expected 24 integers in 0..3", tree="seed_iv")
def _(w):
    text = (w.data / "ReadMe.txt").read_text()
    (w.data / "ReadMe.txt").write_text(text.replace("session2_label = [2,", "session2_label = ["))


@case("seed-iv-de_LDS-key-missing", "Preprocess.py", "{data}/" + IV_FEATURES + ": key de_LDS20 missing", tree="seed_iv")
def _(w):
    edit_mat(w.data / IV_FEATURES, lambda a: a.pop("de_LDS20"))


# ----------------------------------------------------------------------------- Preprocess.py: files that disagree

@case("seed-recording-copied-under-another-date", "Preprocess.py",
      "{data}/ExtractedFeatures: subject 1 has 4 files (1_20131027.mat, 1_20131028.mat, 1_20131030.mat, 1_20131107.mat); "
      "SEED has 3 sessions per subject")
def _(w):   # sessions 2 and 3 as copies of session 1, and one more copy the day after session 1
    for path in (w.data / FEATURES, w.data / RAW):
        for date in ("20131028", "20131030", "20131107"):
            shutil.copy(path, path.with_name(f"1_{date}.mat"))


@case("seed-iv-session-folders-1-and-01", "Preprocess.py",
      "{data}/eeg_feature_smooth/01 and {data}/eeg_feature_smooth/1: both are session 1", tree="seed_iv")
def _(w):
    for folder in ("eeg_feature_smooth", "eeg_raw_data"):
        shutil.copytree(w.data / folder / "1", w.data / folder / "01")


@case("seed-iv-session-folder-4", "Preprocess.py",
      "{data}/eeg_feature_smooth/4: session folder 4, but SEED-IV has sessions 1, 2, 3", tree="seed_iv")
def _(w):
    for folder in ("eeg_feature_smooth", "eeg_raw_data"):
        (w.data / folder / "2").rename(w.data / folder / "4")


@case("label-mats-disagree", "Preprocess.py",
      "{data}/ExtractedFeatures/label.mat and {data}/Preprocessed_EEG/label.mat disagree on 1 of 15 trials "
      "(trial 4: -1 vs 1)")
def _(w):
    edit_mat(w.data / "Preprocessed_EEG" / "label.mat", put("label", (0, 3), 1))


@case("label-mat-one-class", "Preprocess.py",
      "{data}/ExtractedFeatures/label.mat: key label (every session): all 15 trials have label 0 (neutral); "
      "expected trials of the 3 SEED classes")
def _(w):
    for folder in ("ExtractedFeatures", "Preprocessed_EEG"):
        edit_mat(w.data / folder / "label.mat", lambda a: a["label"].fill(0))


@case("seed-iv-readme-session-labelled-twice", "Preprocess.py",
      "{data}/ReadMe.txt: session 1 labelled twice, by session1_label and session1_label, differently", tree="seed_iv")
def _(w):
    with open(w.data / "ReadMe.txt", "a") as fh:
        fh.write("session1_label = [" + ",".join(["0", "1", "2", "3"] * 6) + "];\n")


@case("seed-iv-readme-session-of-one-class", "Preprocess.py",
      "{data}/ReadMe.txt: session2_label: all 24 trials have label 3 (happy); expected trials of the 4 SEED-IV classes",
      tree="seed_iv")
def _(w):
    text = (w.data / "ReadMe.txt").read_text()
    line = next(line for line in text.splitlines() if line.startswith("session2_label"))
    (w.data / "ReadMe.txt").write_text(text.replace(line, "session2_label = [" + ",".join(["3"] * 24) + "];"))


@case("seed-iv-readme-session-4", "Preprocess.py", "{data}/ReadMe.txt: session4_label: SEED-IV has sessions 1, 2, 3",
      tree="seed_iv")
def _(w):
    with open(w.data / "ReadMe.txt", "a") as fh:
        fh.write("session4_label = [" + ",".join(["0", "1", "2", "3"] * 6) + "];\n")


# ----------------------------------------------------------------------------- Preprocess.py: INI and output folder

@case("ini-file-missing", "Preprocess.py", "{tmp}/nope.ini: config file not found")
def _(w):
    w.ini_path = w.tmp / "nope.ini"


@case("ini-missing-key", "Preprocess.py", "[data] input_width: missing required key")
def _(w):
    w.remove = [("data", "input_width")]


@case("ini-input-width-1", "Preprocess.py", "[data] input_width: expected at least 2, got 1")
def _(w):
    w.ini = {"data": {"input_width": 1}}


@case("ini-specInput-length-not-5", "Preprocess.py", "[data] specInput_length: expected 5 (DE bands), got 4")
def _(w):
    w.ini = {"data": {"specInput_length": 4}}


@case("ini-temporal-window-not-whole-samples", "Preprocess.py", "[data] temporal_window_s: expected a multiple of 1/200 s")
def _(w):
    w.ini = {"data": {"temporal_window_s": 0.2025}}


@case("ini-temporal-window-beyond-de-window", "Preprocess.py",
      "[data] temporal_offset_s + temporal_window_s: expected at most the 1 s DE window of SEED, got 0.9 + 0.2 s")
def _(w):
    w.ini = {"data": {"temporal_offset_s": 0.9}}


@case("preprocessed-root-under-a-file", "Preprocess.py",
      "{ini}: [path] preprocessed_root: cannot write to {tmp}/blocker/pre ({tmp}/blocker is a file, not a folder)")
def _(w):
    (w.tmp / "blocker").write_text("a file where a folder should be\n")
    w.pre = w.tmp / "blocker" / "pre"
    w.watch = [w.tmp / "blocker"]


@case("preprocessed-root-is-a-file", "Preprocess.py",
      "{ini}: [path] preprocessed_root: cannot write to {pre} ({pre} is a file, not a folder)")
def _(w):
    w.pre.write_text("a file where a folder should be\n")


@case("preprocessed-root-read-only", "Preprocess.py", "{ini}: [path] preprocessed_root: cannot write to {pre} ({pre} is not writable)")
def _(w):
    read_only(w, w.pre)


@case("session-folder-is-a-file", "Preprocess.py", "{pre}/sub01_ses1: cannot create the folder (File exists)")
def _(w):
    w.pre.mkdir()
    (w.pre / "sub01_ses1").write_text("a file where a session folder should be\n")


@case("force-keeps-old-output-when-input-is-bad", "Preprocess.py",
      "{data}/" + FEATURES + ": key de_LDS3: 1 NaN/Inf values", tree="seed_two")
def _(w):
    """--force on a damaged dataset: the sessions already preprocessed are not touched."""
    shutil.copytree(w.trees.pre_two, w.pre)
    edit_mat(w.data / FEATURES, put("de_LDS3", (0, 0, 0), np.nan))
    w.ini = {"data": {"input_width": 16}}
    w.args = ["--force"]


@case("ini-input-width-beyond-memory", "Preprocess.py",
      "{ini}: [data] input_width = 4096 (with temInput_length = 25): preprocessing one SEED session needs about")
def _(w):
    w.ini = {"data": {"input_width": 4096}}


@case("raw-eeg-resampled-beyond-float32", "Preprocess.py",
      "{data}/" + RAW + ": 124 values of the written eeg array are not finite (the resampling filter overshoots")
def _(w):
    """Finite in the file and in float32, but the resampling filter overshoots a spike of 3.3e38 uV."""
    edit_mat(w.data / RAW, put("djc_eeg2", (slice(None), slice(210, 230)), 3.3e38))


@case("de-interpolated-beyond-float32", "Preprocess.py",
      "{data}/" + FEATURES + ": 4382 values of the written spectral array are not finite (the interpolation overshoots")
def _(w):
    """A band of DE at 3.3e38: the interpolation's weights (up to 1.2, summing to more than 1) overflow it."""
    edit_mat(w.data / FEATURES, put("de_LDS2", (slice(None), slice(None), 0), 3.3e38))


# ----------------------------------------------------------------------------- run.py: INI

RUN_INI = {"data": {"input_width": 16}, "model": TINY_MODEL, "training": {"nbEpoch": 1, "num_threads": 1}}


@case("ini-not-an-ini-file", "run.py", "{ini}: not a readable INI file (File contains no section headers.")
def _(w):
    w.ini_text = "nbEpoch = 50\nbatch_size = 64\n"


@case("ini-missing-section", "run.py", "{ini}: missing section [training]")
def _(w):
    w.remove = [("training", None)]


@case("ini-unknown-section", "run.py", "{ini}: unknown section [optimizer] (expected [path], [data], [model], [training])")
def _(w):
    w.ini = {"optimizer": {"name": "adam"}}


@case("ini-unknown-key", "run.py", "{ini}: [training] epochs: unknown key (known keys: nbEpoch, batch_size")
def _(w):
    w.ini = {"training": {"epochs": 5}}


@case("ini-non-numeric", "run.py", "{ini}: [training] batch_size: expected an integer, got 'sixty-four'")
def _(w):
    w.ini = {"training": {"batch_size": "sixty-four"}}


@case("ini-zero-epochs", "run.py", "{ini}: [training] nbEpoch: expected a positive integer, got 0")
def _(w):
    w.ini = {"training": {"nbEpoch": 0}}


@case("ini-negative-epochs", "run.py", "{ini}: [training] nbEpoch: expected a positive integer, got -3")
def _(w):
    w.ini = {"training": {"nbEpoch": -3}}


@case("ini-zero-batch-size", "run.py", "{ini}: [training] batch_size: expected a positive integer, got 0")
def _(w):
    w.ini = {"training": {"batch_size": 0}}


@case("ini-negative-batch-size", "run.py", "{ini}: [training] batch_size: expected a positive integer, got -64")
def _(w):
    w.ini = {"training": {"batch_size": -64}}


@case("ini-zero-lr", "run.py", "{ini}: [training] lr: expected a positive number, got 0.0")
def _(w):
    w.ini = {"training": {"lr": 0}}


@case("ini-negative-lr", "run.py", "{ini}: [training] lr: expected a positive number, got -0.0001")
def _(w):
    w.ini = {"training": {"lr": -1e-4}}


@case("ini-nan-lr", "run.py", "{ini}: [training] lr: expected a finite number, got nan")
def _(w):
    w.ini = {"training": {"lr": "nan"}}


@case("ini-empty-path", "run.py", "{ini}: [path] result_path: expected a path, got ''")
def _(w):
    w.ini = {"path": {"result_path": ""}}


@case("ini-input-width-too-small", "run.py", "{ini}: [data] input_width: 4 is too small for 2 dense blocks")
def _(w):
    w.ini = {"data": {"input_width": 4}}


@case("ini-depth-not-3N+4", "run.py", "{ini}: [model] depth_spec: expected a depth of the form 3N+4")
def _(w):
    w.ini = {"model": {"depth_spec": 15}}


@case("ini-unknown-protocol", "run.py", "{ini}: [training] protocol: expected one of trial, paper, random, loso, cross_session, got 'kfold'")
def _(w):
    w.ini = {"training": {"protocol": "kfold"}}


@case("ini-nb-class-not-the-datasets", "run.py", "{ini}: [model] nb_class: SEED has 3 classes, got 4")
def _(w):
    w.ini = {"model": {"nb_class": 4}}


@case("ini-unknown-device", "run.py", "{ini}: [training] device: expected auto, cpu, cuda or cuda:N, got 'tpu'")
def _(w):
    w.ini = {"training": {"device": "tpu"}}


@case("ini-device-malformed", "run.py", "{ini}: [training] device: expected auto, cpu, cuda or cuda:N, got 'cuda:abc'")
def _(w):
    w.ini = {"training": {"device": "cuda:abc"}}


@case("ini-seed-beyond-32-bits", "run.py", "{ini}: [training] seed: expected an integer in [0, 2**32 - 1], got 4294967296")
def _(w):
    w.ini = {"training": {"seed": 2**32}}


@case("ini-cuda-without-gpu", "run.py", "{ini}: [training] device: 'cuda' asked for, but this machine has no CUDA device")
def _(w):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available")
    w.ini = {"training": {"device": "cuda"}}


@case("ini-cuda-index-beyond-the-devices", "run.py", "{ini}: [training] device: 'cuda:99' asked for, but this machine has ")
def _(w):
    w.ini = {"training": {"device": "cuda:99"}}


# ----------------------------------------------------------------------------- run.py: command line

@case("shard-out-of-range", "run.py", "--shard: expected 0 <= I < N, got '2/2'")
def _(w):
    w.args = ["--shard", "2/2"]


@case("shard-malformed", "run.py", "--shard: expected I/N such as 0/4, or auto, got '1of2'")
def _(w):
    w.args = ["--shard", "1of2"]


@case("subjects-malformed", "run.py", "expected comma-separated integers, got 'one'")
def _(w):
    w.args = ["--subjects", "one"]


# ----------------------------------------------------------------------------- run.py: preprocessed data and results

@case("subject-not-preprocessed", "run.py", "{pre}: sub03_ses1 not preprocessed; run `python Preprocess.py -c {ini} --subjects 3 --sessions 1`")
def _(w):
    w.args = ["--subjects", "3", "--sessions", "1"]


@case("preprocessed-with-another-config", "run.py",
      "{pre}/sub01_ses1: preprocessed with [data] input_width = 16, but {ini} has 17; rerun `python Preprocess.py -c {ini} --force`")
def _(w):
    w.ini = {"data": {"input_width": 17}}


@case("preprocessed-with-another-set-value", "run.py",
      "{pre}/sub01_ses1: preprocessed with [data] input_width = 16, but --set data.input_width=17 has 17; rerun "
      "`python Preprocess.py -c {ini} --set path.preprocessed_root={pre} --set data.input_width=17 --force`")
def _(w):
    w.args = ["--set", f"path.preprocessed_root={w.pre}", "--set", "data.input_width=17"]


@case("set-model-input-size-not-preprocessed", "run.py",
      "{pre}/model.input_width=17: no preprocessed sessions; run `python Preprocess.py -c {ini} --set "
      "model.input_width=17`")
def _(w):
    w.args = ["--set", "model.input_width=17"]      # an input size where the authors' INI keeps it


@case("preprocessed-npy-truncated", "run.py", "{pre}/sub02_ses1/de.npy: ")
def _(w):
    path = w.pre / "sub02_ses1" / "de.npy"
    path.write_bytes(path.read_bytes()[:1000])


@case("preprocessed-manifest-garbage", "run.py", "{pre}/sub01_ses1/manifest.json: unreadable (JSONDecodeError), so "
      "sub01_ses1 counts as not preprocessed; run `python Preprocess.py -c {ini} --subjects 1 --sessions 1`")
def _(w):
    (w.pre / "sub01_ses1" / "manifest.json").write_text("{not json")


@case("preprocessed-manifest-of-another-session", "run.py",
      "{pre}/sub01_ses1/manifest.json: says subject 2, session 1, but its folder is sub01_ses1")
def _(w):
    manifest = json.loads((w.pre / "sub01_ses1" / "manifest.json").read_text())
    (w.pre / "sub01_ses1" / "manifest.json").write_text(json.dumps({**manifest, "subject": 2}))


@case("class-without-a-training-trial", "run.py",
      "{pre}/sub01_ses1: class 2 (positive) has test windows but no training window under protocol trial (sub01_ses1)")
def _(w):
    """Labels edited so that the positive trials among 1-9 read neutral: positive is left to the test trials."""
    label, trial = (np.load(w.pre / "sub01_ses1" / f"{name}.npy") for name in ("label", "trial"))
    label[(label == 2) & (trial <= 9)] = 1
    np.save(w.pre / "sub01_ses1" / "label.npy", label)


@case("preprocessed-without-raw-eeg", "run.py", "{pre}/sub01_ses1: no eeg.npy (no raw EEG was preprocessed), which stream temporal needs; set [model] streams = spectral")
def _(w):
    manifest = json.loads((w.pre / "sub01_ses1" / "manifest.json").read_text())
    for name in ("temporal", "eeg"):
        del manifest["arrays"][name]
        (w.pre / "sub01_ses1" / f"{name}.npy").unlink()
    (w.pre / "sub01_ses1" / "manifest.json").write_text(json.dumps(manifest))


@case("loso-needs-three-subjects", "run.py",
      "{ini}: [training] protocol = loso needs at least 3 preprocessed subjects for session 1, found 2 under {pre}")
def _(w):
    w.ini = {"training": {"protocol": "loso"}}


@case("result-path-under-a-file", "run.py",
      "{ini}: [path] result_path: cannot write to {tmp}/blocker/res ({tmp}/blocker is a file, not a folder)")
def _(w):
    (w.tmp / "blocker").write_text("a file where a folder should be\n")
    w.res = w.tmp / "blocker" / "res"
    w.watch = [w.tmp / "blocker"]


@case("result-path-is-a-file", "run.py", "{ini}: [path] result_path: cannot write to {res} ({res} is a file, not a folder)")
def _(w):
    w.res.write_text("a file where a folder should be\n")


@case("result-path-read-only", "run.py", "{ini}: [path] result_path: cannot write to {res} ({res} is not writable)")
def _(w):
    read_only(w, w.res)


@case("runs-folder-is-a-file", "run.py", "{ini}: [path] result_path: cannot write to {res}/runs ({res}/runs is a file, not a folder)")
def _(w):
    w.res.mkdir()
    (w.res / "runs").write_text("a file where a folder should be\n")


def _fake_result(w: Workspace, text: str) -> None:
    (w.res / "runs").mkdir(parents=True)
    (w.res / "runs" / "sub01_ses1.json").write_text(text)


@case("results-of-another-config", "run.py", "{res}/runs/sub01_ses1.json: made with a different configuration")
def _(w):
    _fake_result(w, json.dumps({"run": "sub01_ses1", "config_key": "0123456789abcdef"}))


@case("summarize-without-runs", "run.py", "{res}/runs: no finished runs to summarize; run `python run.py -c {ini}` first")
def _(w):
    w.args = ["--summarize"]


# ----------------------------------------------------------------------------- run.py: names, empty values, long paths

PREDICT = ["--subjects", "1", "--sessions", "1"]


@case("predict-path-above-the-result-folder", "run.py", "--predict '../../../x': not a run name (expected subNN_sesK")
def _(w):
    w.args = ["--predict", "../../../x", *PREDICT]


@case("predict-absolute-path", "run.py", "--predict '{tmp}/x': not a run name")
def _(w):
    w.args = ["--predict", str(w.tmp / "x"), *PREDICT]


@case("explain-into-the-dataset-folder", "run.py", "--explain '../../data/SEED/x': not a run name")
def _(w):
    w.args = ["--explain", "../../data/SEED/x"]


@case("predict-run-name-not-as-written", "run.py", "--predict 'sub1_ses1': not a run name (expected subNN_sesK, e.g. "
      "sub01_ses1, or subNN_sesK_repR, as the files under runs/ are named); did you mean sub01_ses1?")
def _(w):
    w.args = ["--predict", "sub1_ses1", *PREDICT]


@case("predict-run-name-of-300-digits", "run.py", "--predict 'sub0000000")
def _(w):
    w.args = ["--predict", f"sub{'0' * 300}1_ses1", *PREDICT]


@case("predict-run-name-with-an-escape-sequence", "run.py", "--predict 'sub01_ses1\\x1b[2J': not a run name")
def _(w):
    w.args = ["--predict", "sub01_ses1\x1b[2J", *PREDICT]     # printed escaped: it cannot clear the terminal


@case("predict-empty", "run.py", "--predict: empty value '' (an unset shell variable?)")
def _(w):
    w.args = ["--predict", "", *PREDICT]


@case("explain-empty", "run.py", "--explain: empty value ''")
def _(w):
    w.args = ["--explain", ""]


@case("shard-empty", "run.py", "--shard: empty value ''")
def _(w):
    w.args = ["--shard", ""]


@case("config-empty", "run.py", "-c/--config: empty value ''")
def _(w):
    w.args = ["-c", ""]     # the last -c wins


@case("result-path-empty", "run.py", "--result-path: empty value ''")
def _(w):
    w.args = ["--result-path", ""]


@case("subjects-blank", "run.py", "--subjects: empty value ' '")
def _(w):
    w.args = ["--subjects", " "]


@case("result-path-component-over-255-bytes", "run.py", "--result-path: a path component of 300 bytes")
def _(w):
    w.args = ["--result-path", str(w.tmp / ("r" * 300))]


@case("ini-result-path-component-over-255-bytes", "run.py",
      "{ini}: [path] result_path: a path component of 256 bytes (ééé")
def _(w):
    w.ini = {"path": {"result_path": str(w.tmp / ("é" * 128))}}     # 128 characters, 256 bytes in UTF-8


@case("ini-preprocessed-root-component-over-255-bytes", "run.py",
      "{ini}: [path] preprocessed_root: a path component of 300 bytes")
def _(w):
    w.ini = {"path": {"preprocessed_root": str(w.tmp / ("p" * 300))}}


@case("ini-dataset-root-component-over-255-bytes", "Preprocess.py",
      "{ini}: [path] dataset_root: a path component of 300 bytes")
def _(w):
    w.ini = {"path": {"dataset_root": str(w.tmp / ("d" * 300))}}


# ----------------------------------------------------------------------------- run.py: checkpoints that are not loaded


def _checkpoint(w: Workspace, content) -> Path:
    path = w.res / "checkpoints" / "sub01_ses1.pt"
    path.parent.mkdir(parents=True)
    torch.save(content, path)
    return path


@case("predict-checkpoint-with-a-payload", "run.py",
      "{res}/checkpoints/sub01_ses1.pt: holds objects whose loading would run code (io.open)")
def _(w):   # the payload would write {res}/PWNED, which the snapshot of {res} would show
    _checkpoint(w, {"model": {}, "config": {}, "run": "sub01_ses1", "normalization": {"de_mean": Payload(w.res / "PWNED")}})
    w.args = ["--predict", "sub01_ses1", *PREDICT]


@case("explain-checkpoint-with-a-payload", "run.py",
      "{res}/checkpoints/sub01_ses1.pt: holds objects whose loading would run code (io.open)")
def _(w):
    _checkpoint(w, Payload(w.res / "PWNED"))
    w.args = ["--explain", "sub01_ses1"]


@case("predict-checkpoint-of-an-earlier-version-damaged", "run.py",
      "{res}/checkpoints/sub01_ses1.pt: damaged checkpoint (")
def _(w):     # NumPy arrays of numbers are read, as earlier versions wrote them, and then checked like any checkpoint
    _checkpoint(w, {"model": {}, "normalization": {"de_mean": np.zeros((1, 62, 5), np.float32)}})
    w.args = ["--predict", "sub01_ses1", *PREDICT]


@case("predict-checkpoint-unreadable", "run.py",
      "{res}/checkpoints/sub01_ses1.pt: cannot read the file (Permission denied); check its permissions (it is not "
      "damaged, nothing was changed)")
def _(w):
    unreadable(w, _checkpoint(w, {"model": {}}))
    w.args = ["--predict", "sub01_ses1", *PREDICT]


# ----------------------------------------------------------------------------- Preprocess.py: reading the INI file, --set

@case("ini-unreadable", "Preprocess.py", "{tmp}/locked.ini: cannot read the config file (Permission denied)")
def _(w):
    w.ini_path = write_ini(w.tmp / "locked.ini", path={"dataset_root": w.data, "preprocessed_root": w.pre,
                                                       "result_path": w.res})
    unreadable(w, w.ini_path)


@case("ini-is-a-folder", "Preprocess.py", "{tmp}/folder.ini: cannot read the config file (Is a directory)")
def _(w):
    w.ini_path = w.tmp / "folder.ini"
    w.ini_path.mkdir()


@case("ini-authors-keras-config", "Preprocess.py",
      "[path] model_save_path: unknown key (the authors' Keras model folder; here checkpoints go under result_path); "
      "[path] dataset_root, preprocessed_root: missing required keys; missing section [data] (required keys: dataset)")
def _(w):
    from conftest import AUTHORS_INI

    w.ini_text = AUTHORS_INI


@case("ini-key-in-capitals", "Preprocess.py", "{ini}: 2 problems: [training] NBEPOCH: unknown key (did you mean nbEpoch?); "
      "[training] nbEpoch: missing required key")
def _(w):
    w.ini = {"training": {"NBEPOCH": 50}}
    w.remove = [("training", "nbEpoch")]


@case("set-bad-value", "Preprocess.py", "--set training.nbEpoch=0: [training] nbEpoch: expected a positive integer, got 0")
def _(w):
    w.args = ["--set", "data.feature=de_movingAve", "--set", "training.nbEpoch=0"]


@case("set-no-section", "Preprocess.py",
      "--set nbEpoch=5: expected SECTION.KEY=VALUE, e.g. training.nbEpoch=5; did you mean training.nbEpoch=5?")
def _(w):
    w.args = ["--set", "nbEpoch=5"]


@case("set-unknown-key", "Preprocess.py",
      "--set data.Input_Width=16: [data] Input_Width: unknown key (did you mean input_width?)")
def _(w):
    w.args = ["--set", "data.Input_Width=16"]


@case("set-comment-in-a-value", "Preprocess.py",
      "--set path.result_path={tmp}/res #2: [path] result_path: expected no ';' or '#' at the start or after a space")
def _(w):
    w.args = ["--set", f"path.result_path={w.tmp}/res #2"]


@case("set-input-width-1", "Preprocess.py", "--set data.input_width=1: [data] input_width: expected at least 2, got 1")
def _(w):
    w.args = ["--set", "data.input_width=1"]


@case("set-temporal-window-beyond-de-window", "Preprocess.py",
      "--set data.temporal_offset_s=0.9: [data] temporal_offset_s + temporal_window_s: expected at most the 1 s DE "
      "window of SEED, got 0.9 + 0.2 s")
def _(w):
    w.args = ["--set", "data.temporal_offset_s=0.9"]


@case("set-data-not-preprocessed", "run.py",
      "{pre}/data.temporal_window_s=0.1: no preprocessed sessions; run `python Preprocess.py -c {ini} --set "
      "data.temporal_window_s=0.1`")
def _(w):
    w.args = ["--set", "data.temporal_window_s=0.1", "--set", "training.nbEpoch=2"]


# ----------------------------------------------------------------------------- the test


def snapshot(*roots: Path) -> dict:
    """Every file and folder under the roots: files with (size, mtime), folders by name."""
    out = {}
    for root in roots:
        if root.is_file():
            out[root] = root.stat().st_size, root.stat().st_mtime_ns
        elif root.is_dir():
            out[root] = "dir"
            for path in root.rglob("*"):
                out[path] = "dir" if path.is_dir() else (path.stat().st_size, path.stat().st_mtime_ns)
    return out


def write_case_ini(w: Workspace, run: bool) -> Path:
    if w.ini_path is not None:
        return w.ini_path
    ini = w.tmp / "case.ini"
    if w.ini_text is not None:
        ini.write_text(w.ini_text)
        return ini
    sections = {"path": {"dataset_root": w.data, "preprocessed_root": w.pre, "result_path": w.res}}
    for section, values in [*(RUN_INI.items() if run else ()), *w.ini.items()]:
        sections.setdefault(section, {}).update(values)
    write_ini(ini, w.base, **sections)
    if w.remove:
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str
        parser.read(ini, encoding="utf-8")
        for section, key in w.remove:
            parser.remove_section(section) if key is None else parser.remove_option(section, key)
        with open(ini, "w", encoding="utf-8") as fh:
            parser.write(fh)
    return ini


# The one-line error path of each command line, through a subprocess (the rest run in-process).
COMMAND_LINE = {"dataset-folder-missing", "ini-file-missing", "ini-not-an-ini-file", "result-path-is-a-file",
                "preprocessed-npy-truncated", "shard-malformed"}


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_fails_cleanly(bad: Case, trees: Trees, tmp_path: Path, capsys):
    run = bad.script == "run.py"
    source = {"seed": trees.seed, "seed_iv": trees.seed_iv, "seed_two": trees.seed_two}[bad.tree]
    if run:  # run.py reads the preprocessed maps only: the shared dataset folder is watched, not copied
        data, pre = trees.seed_two, shutil.copytree(trees.pre_two, tmp_path / "pre")
    else:
        data, pre = shutil.copytree(source, tmp_path / source.name), tmp_path / "pre"
    w = Workspace(trees=trees, tmp=tmp_path, data=data, pre=pre, res=tmp_path / "res",
                  base="SEED_IV.ini" if bad.tree == "seed_iv" else "SEED.ini")
    try:
        bad.setup(w)
        ini = write_case_ini(w, run)
        before = snapshot(w.data, w.pre, w.res, *w.watch)
        if w.prefix or bad.id in COMMAND_LINE:
            p = subprocess.run([*w.prefix, sys.executable, bad.script, "-c", str(ini), *w.args], cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
        else:
            p = run_in_process(capsys, bad.script, "-c", str(ini), *w.args)
        after = snapshot(w.data, w.pre, w.res, *w.watch)
    finally:
        for folder in (w.pre, w.res):  # undo read_only() so that pytest can clean up
            if folder.is_dir():
                folder.chmod(stat.S_IRWXU)
    expected = bad.expected.format(data=w.data, pre=w.pre, res=w.res, ini=ini, tmp=tmp_path)
    lines = p.stderr.splitlines()
    assert p.returncode == 1, f"exit code {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert expected in lines[0], f"\nexpected: {expected}\ngot:      {lines[0]}"
    assert after == before, "files changed: " + ", ".join(
        str(k) for k in set(before) ^ set(after) | {k for k in before if k in after and before[k] != after[k]})


# ----------------------------------------------------------------------------- classes: names, empty values


# Names that are no run name, as a user or a file could give them: paths above or beside the result folder,
# absolute paths, other spellings, names too long for a file system or for int(), control characters.
NOT_RUN_NAMES = ["../../x", "..", ".", "", "/etc/passwd", "sub01_ses1/../../x", "sub01_ses1.pt", "sub1_ses1",
                 "sub01_ses01", "sub01_ses1_rep0", "SUB01_SES1", " sub01_ses1", "sub01_ses1\n", "sub01_ses1\x00",
                 "sub01_ses1\x1b[2J", f"sub{'1' * 300}_ses1", f"sub{'9' * 5000}_ses1", "sub01_ses1\udcff"]


@pytest.mark.parametrize("name", NOT_RUN_NAMES, ids=range(len(NOT_RUN_NAMES)))
def test_what_is_not_a_run_name_never_becomes_a_path(name):
    from sst import errors, fileio
    from sst.training import runspec

    with pytest.raises(errors.UserError) as refused:
        runspec.run_named(name, "--predict")
    message = str(refused.value)
    assert message.startswith("--predict ") and "not a run name" in message and message.isprintable()
    assert len(message) < 400
    if "/" in name or name in ("", ".", "..") or "\x00" in name or len(name.encode("utf-8", "surrogateescape")) > 255:
        with pytest.raises(errors.UserError):
            fileio.child(Path("/results/checkpoints"), name, "--predict")


def commands() -> dict:
    """Each command line's main and the arguments before its options (figures.py: a sub-command)."""
    import model
    import Preprocess
    import run
    from sst.reporting import figures
    from sst.results import checkpoints

    out = {"run.py": (run.main, []), "Preprocess.py": (Preprocess.main, []), "model.py": (model.main, []),
           "synthetic.py": (synthetic.main, []), "checkpoints.py": (checkpoints.main, [])}
    out |= {f"figures.py {sub}": (figures.main, [sub]) for sub in ("architecture", "demo", "explain")}
    return out


def options_taking_a_value(main, before: list[str], monkeypatch) -> list[str]:
    """The options of a command's parser (its sub-command's) that take a value, read from the parser itself."""
    import argparse

    class Parsed(Exception):
        pass

    seen = []

    def capture(parser, args=None, namespace=None):
        seen.append(parser)
        raise Parsed

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", capture)
        with pytest.raises(Parsed):
            main(before)
    parser = seen[0]
    for sub in before:      # figures.py: the sub-command's own parser
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[sub]
    return [a.option_strings[-1] for a in parser._actions if a.option_strings and a.nargs != 0]


@pytest.mark.parametrize("command", list(commands()))
def test_every_option_refuses_an_empty_value(command, monkeypatch, capsys):
    """`--shard "$UNSET"` and its kind: each option of each command line that takes a value refuses an empty
    or blank one with one error naming the option, before any work."""
    from sst import errors

    main, before = commands()[command]
    options = options_taking_a_value(main, before, monkeypatch)
    assert options
    for option in options:
        for value in ("", "  "):
            with pytest.raises(errors.UserError, match=rf"^(-\w/)?{re.escape(option)}: empty value "):
                main([*before, option, value])
    assert capsys.readouterr() == ("", "")
