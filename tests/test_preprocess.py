"""Tests of Preprocess.py: grid interpolation, DE, resampling, and the command end to end.

    python -m pytest tests/test_preprocess.py -q

Unit tests check the maps against closed forms (electrodes on their cells, constants stay
constant, DE of Gaussian noise, a slow sinusoid survives resampling, a fast one is filtered out);
end-to-end tests run `python Preprocess.py -c <tmp ini>` as a subprocess on tiny synthetic data
(trial_fraction 0.03) for both datasets, including resume, --force and no raw EEG. Bad inputs
(exit code 1, one `error:` line, nothing written) are the corpus of tests/test_bad_inputs.py.
"""
import errno
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import signal, stats

import Preprocess
from conftest import ROOT, copy_of, dataset_ini, run_cli
from Preprocess import differential_entropy, gaussian_de
from sst import config, errors
from sst.config import load_config
from sst.data import datasets, readers, session_store, synthetic
from sst.data.inputs import (
    electrodes_to_maps,
    interpolation_matrix,
    resample_matrix,
    temporal_spec,
)
from sst.data.session_store import load_preprocessed
from sst.errors import ConfigError, DataError

FRACTION = 0.03
PROGRESS = re.compile(r"^sub\d\d_ses\d: \d+ samples, [\d.]+ MB, [\d.]+ s$")


def preprocess_cli(ini: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "Preprocess.py", "-c", str(ini), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def windows(dataset, session):
    return [max(synthetic.MIN_WINDOWS, round(t * FRACTION)) for t in datasets.get(dataset).trial_windows[session]]


@pytest.fixture(scope="module")
def seed_root(tmp_path_factory):
    return synthetic.write_seed(tmp_path_factory.mktemp("seed") / "SEED", subjects=(1, 2), sessions=(1,), trial_fraction=FRACTION)


@pytest.fixture(scope="module")
def seed_iv_root(tmp_path_factory):
    return synthetic.write_seed_iv(tmp_path_factory.mktemp("seed_iv") / "SEED_IV", subjects=(1,), sessions=(1, 2),
                                   trial_fraction=FRACTION)


# ----------------------------------------------------------------------------- spatial maps


# ----------------------------------------------------------------------------- DE and resampling


def test_gaussian_de_closed_form():
    for sigma in (0.5, 3.0, 20.0):
        assert np.isclose(gaussian_de(sigma ** 2), stats.norm(scale=sigma).entropy())


def test_de_of_gaussian_noise():
    rng = np.random.default_rng(0)
    sigma, window = 5.0, 200 * 30
    de = differential_entropy(rng.normal(0, sigma, (4, 20 * window)), datasets.get("SEED").bands_hz, window)
    assert de.shape == (4, 20, 5)
    for b, (lo, hi) in enumerate(datasets.get("SEED").bands_hz):
        sos = signal.butter(4, (lo, hi), btype="bandpass", fs=200, output="sos")
        _, h = signal.sosfreqz(sos, worN=2 ** 16, fs=200)
        variance = sigma ** 2 * np.mean(np.abs(h) ** 4)  # white noise through the zero-phase (squared) filter
        assert abs(de[..., b].mean() - 0.5 * np.log(2 * np.pi * np.e * variance)) < 0.02


# ----------------------------------------------------------------------------- end to end


def check_session(folder: Path, dataset: str, session: int, has_temporal: bool = True, width: int = 32):
    manifest = json.loads((folder / "manifest.json").read_text())
    n_windows = windows(dataset, session)
    n = sum(n_windows)
    assert manifest["n_samples"] == n and manifest["has_temporal"] == has_temporal
    assert manifest["dataset"] == dataset and manifest["session"] == session
    expected = {"spectral": ((n, width, width, 5), "float32"), "de": ((n, 62, 5), "float32"),
                "label": ((n,), "int64"), "trial": ((n,), "int64")}
    if has_temporal:
        expected |= {"temporal": ((n, width, width, 25), "float32"), "eeg": ((n, 62, 25), "float32")}
    assert manifest["arrays"] == {k: {"shape": list(s), "dtype": d} for k, (s, d) in expected.items()}
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{k}.npy" for k in expected] + ["manifest.json"])
    arrays = {k: np.load(folder / f"{k}.npy") for k in expected}
    assert all(arrays[k].shape == s and str(arrays[k].dtype) == d for k, (s, d) in expected.items())
    assert arrays["trial"].tolist() == np.repeat(np.arange(1, len(n_windows) + 1), n_windows).tolist()
    assert arrays["label"].tolist() == np.repeat(datasets.get(dataset).trial_labels[session], n_windows).tolist()
    matrix = interpolation_matrix(width)
    assert np.array_equal(electrodes_to_maps(arrays["de"], matrix, width), arrays["spectral"])  # run.py relies on it
    # per batch too, to float32 rounding: BLAS may block a 4-sample product differently from the session's
    # (OpenBLAS's AVX2 kernels on an AMD EPYC differ in the last bit; AVX-512 ones on a Xeon did not)
    scale = np.abs(arrays["spectral"]).max()
    np.testing.assert_allclose(electrodes_to_maps(arrays["de"][5:9], matrix, width), arrays["spectral"][5:9],
                               rtol=0, atol=1e-6 * scale)
    if has_temporal:
        assert np.array_equal(electrodes_to_maps(arrays["eeg"], matrix, width), arrays["temporal"])
    return manifest, arrays


def test_end_to_end_seed(seed_root, tmp_path):
    ini = dataset_ini(tmp_path, "SEED", seed_root)
    result = preprocess_cli(ini)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(PROGRESS.match(line) for line in lines) and result.stderr == ""
    manifest, arrays = check_session(tmp_path / "pre" / "sub02_ses1", "SEED", 1)
    assert manifest["subject"] == 2 and manifest["sources"]["raw"].endswith("Preprocessed_EEG/2_20140404.mat")
    assert manifest["data"] == load_config(ini).to_dict()["data"]
    features = readers.read_features(seed_root / "ExtractedFeatures" / "2_20140404.mat", "de_LDS")
    assert np.array_equal(arrays["de"][arrays["trial"] == 3], features[3].transpose(1, 0, 2).astype(np.float32))
    # eeg = resample_poly of the segment with 16 samples of context either side (away from the trial edges)
    raw = readers.read_raw(seed_root / "Preprocessed_EEG" / "2_20140404.mat")[4]
    first = int(np.flatnonzero(arrays["trial"] == 4)[0])
    expected = signal.resample_poly(raw[:, 200 - 16: 200 + 40 + 16], 5, 8, axis=-1)[:, 10:35]
    np.testing.assert_allclose(arrays["eeg"][first + 1], expected, rtol=1e-4, atol=1e-3)

    index = json.loads((tmp_path / "pre" / "manifest.json").read_text())
    assert [(s["subject"], s["session"], s["folder"]) for s in index["sessions"]] == [(1, 1, "sub01_ses1"), (2, 1, "sub02_ses1")]
    sessions = load_preprocessed(load_config(ini))
    assert [(s.subject, s.session) for s in sessions] == [(1, 1), (2, 1)]
    assert isinstance(sessions[1].de, np.memmap) and sessions[1].de.shape == (sum(windows("SEED", 1)), 62, 5)
    assert sessions[1].eeg.shape[2] == 25 and np.array_equal(sessions[1].label, arrays["label"])
    assert [s.subject for s in load_preprocessed(load_config(ini), subjects=[2], sessions=[1])] == [2]
    with pytest.raises(DataError, match=r"sub03_ses1 not preprocessed; run `python Preprocess.py -c .* --subjects 3"):
        load_preprocessed(load_config(ini), subjects=[3], sessions=[1])


def test_end_to_end_seed_iv(seed_iv_root, tmp_path):
    ini = dataset_ini(tmp_path, "SEED-IV", seed_iv_root)
    result = preprocess_cli(ini)
    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["sub01_ses1", "sub01_ses2"]
    check_session(tmp_path / "pre" / "sub01_ses1", "SEED-IV", 1)
    _, arrays = check_session(tmp_path / "pre" / "sub01_ses2", "SEED-IV", 2)
    raw = readers.read_raw(seed_iv_root / "eeg_raw_data" / "2" / "1_20161125.mat")[1]
    expected = signal.resample_poly(raw[:, 800 - 16: 800 + 40 + 16], 5, 8, axis=-1)[:, 10:35]  # window 1 starts at 4 s
    np.testing.assert_allclose(arrays["eeg"][1], expected, rtol=1e-4, atol=1e-3)


@pytest.mark.slow
def test_rerun_skips_force_redoes_and_config_changes_rebuild(seed_root, tmp_path):
    ini = dataset_ini(tmp_path, "SEED", seed_root)
    assert preprocess_cli(ini, "--subjects", "1").returncode == 0
    spectral = tmp_path / "pre" / "sub01_ses1" / "spectral.npy"
    stamp = spectral.stat().st_mtime_ns
    result = preprocess_cli(ini, "--subjects", "1")
    assert result.returncode == 0 and result.stdout.startswith("1 session(s) already preprocessed")
    assert spectral.stat().st_mtime_ns == stamp
    result = preprocess_cli(ini, "--subjects", "1", "--force")
    assert result.returncode == 0 and PROGRESS.match(result.stdout.splitlines()[0]) and spectral.stat().st_mtime_ns != stamp

    # an interrupted run: arrays half-written, manifest not yet there -> the rerun redoes that session only
    assert preprocess_cli(ini).stdout.splitlines()[0].startswith("sub02_ses1")
    (tmp_path / "pre" / "sub02_ses1" / "manifest.json").unlink()
    temporal = tmp_path / "pre" / "sub02_ses1" / "temporal.npy"
    temporal.write_bytes(temporal.read_bytes()[:1000])
    result = preprocess_cli(ini)
    assert [line.split(":")[0] for line in result.stdout.splitlines()[:1]] == ["sub02_ses1"]
    check_session(tmp_path / "pre" / "sub02_ses1", "SEED", 1)
    assert not list((tmp_path / "pre").rglob("*.tmp"))

    wider = dataset_ini(tmp_path, "SEED", seed_root, input_width=17)
    with pytest.raises(DataError, match=r"input_width = 32, but .* has 17; rerun `python Preprocess.py -c .* --force`"):
        load_preprocessed(load_config(wider))
    result = preprocess_cli(wider)  # a different [data] config is rebuilt without --force
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2
    check_session(tmp_path / "pre" / "sub01_ses1", "SEED", 1, width=17)


def test_no_raw_eeg(tmp_path):
    root = synthetic.write_seed(tmp_path / "SEED", subjects=(1, 2), sessions=(1,), trial_fraction=FRACTION, raw=False)
    ini = dataset_ini(tmp_path, "SEED", root)
    result = preprocess_cli(ini)
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stdout.splitlines() if not PROGRESS.match(line)]
    assert notices == [f"no raw EEG under {root / 'Preprocessed_EEG'}: only the spatial-spectral stream can be "
                       f"trained (set [model] streams = spectral)"]
    check_session(tmp_path / "pre" / "sub01_ses1", "SEED", 1, has_temporal=False)
    assert all(s.eeg is None for s in load_preprocessed(load_config(ini)))


def test_de_from_raw(seed_root, tmp_path):
    ini = dataset_ini(tmp_path, "SEED", seed_root, feature="de_raw")
    result = preprocess_cli(ini, "--subjects", "2")
    assert result.returncode == 0, result.stderr
    manifest, arrays = check_session(tmp_path / "pre" / "sub02_ses1", "SEED", 1)
    assert manifest["sources"]["features"] is None and manifest["data"]["feature"] == "de_raw"
    assert np.isfinite(arrays["de"]).all() and 0 < arrays["de"].mean() < 10  # nats of band-passed uV


# ----------------------------------------------------------------------------- missing output
# Every bad input of the command line (files, keys, shapes, INI values, output folders) is a case of
# tests/test_bad_inputs.py.


# ----------------------------------------------------------------------------- --no-maps, checks of what is written


@pytest.mark.slow
def test_no_maps_writes_what_run_reads_and_maps_later_rebuild(seed_root, tmp_path):
    ini = dataset_ini(tmp_path, "SEED", seed_root)
    result = preprocess_cli(ini, "--subjects", "1", "--no-maps")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "pre" / "sub01_ses1"
    assert sorted(p.name for p in folder.iterdir()) == ["de.npy", "eeg.npy", "label.npy", "manifest.json", "trial.npy"]
    session, = load_preprocessed(load_config(ini))
    assert session.eeg.shape[1:] == (62, 25) and len(session.label) == sum(windows("SEED", 1))
    again = preprocess_cli(ini, "--subjects", "1", "--no-maps")
    assert again.stdout.startswith("1 session(s) already preprocessed")
    with_maps = preprocess_cli(ini, "--subjects", "1")        # maps asked for: the session is rebuilt with them
    assert with_maps.returncode == 0 and PROGRESS.match(with_maps.stdout.splitlines()[0])
    check_session(folder, "SEED", 1)
    assert preprocess_cli(ini, "--subjects", "1", "--no-maps").stdout.startswith("1 session(s) already")


def test_estimated_memory_covers_a_session_and_refuses_the_impossible(tmp_path):
    import Preprocess

    cfg = load_config(ROOT / "SEED.ini")
    raw = 62 * 200 * 3394 * 8                     # one full SEED session's raw EEG, float64
    assert raw < Preprocess.estimated_bytes(cfg, maps=False) < Preprocess.estimated_bytes(cfg) < raw + 2**30
    huge = dataset_ini(tmp_path, "SEED", tmp_path / "SEED", input_width=4096)
    with pytest.raises(ConfigError, match=r"\[data\] input_width = 4096 .* needs about [\d,.]+ GiB of memory, "
                                          r"[\d,.]+ GiB are available"):
        Preprocess.preprocess(load_config(huge))
    assert not (tmp_path / "pre").exists()


def test_written_values_are_checked(tmp_path, capsys):
    """Resampling overshoot beyond float32's range is an error naming the raw file; float64 values
    that float32 flushes to zero are a warning naming the file."""
    import Preprocess
    from sst.data.readers import Recording

    cfg = load_config(ROOT / "SEED.ini")
    rec = Recording(subject=1, session=1, features=tmp_path / "f.mat", raw=tmp_path / "r.mat", prefix=None)
    de = {1: np.full((62, 3, 5), 20.0)}
    raw = {1: np.zeros((62, 601))}
    raw[1][:, 10:30] = 3.3e38          # finite in float32, but the resampling filter overshoots it
    spec, matrix = temporal_spec(cfg), interpolation_matrix(8)

    def check():
        with np.errstate(over="ignore", invalid="ignore"):
            arrays = Preprocess.session_arrays(de, raw, np.array([0]), spec, matrix, resample_matrix(spec), 8, maps=False)
        maps = {"spectral": arrays["de"], "temporal": arrays["eeg"]}
        Preprocess._check_values(rec, de, raw, arrays, "de_LDS", maps, matrix, 8)

    with pytest.raises(DataError, match=r"r.mat: \d+ values of the written eeg array are not finite \(the resampling filter"):
        check()
    raw[1][:] = 1.0
    de[1][:, :, 1] = 3.3e38            # finite in float32, but the interpolation overshoots it
    with pytest.raises(DataError, match=r"f.mat: \d+ values of the written spectral array are not finite \(the interp"):
        check()
    de[1][:, :, 1] = 20.0
    de[1][0, 0, 0] = 1e-320            # a float64 denormal: 0 in float32
    check()
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "f.mat: 1 values of de_LDS are below float32's smallest normal" in err


@pytest.mark.slow
def test_manifest_of_another_session_is_refused_and_rebuilt(seed_root, tmp_path):
    ini = dataset_ini(tmp_path, "SEED", seed_root)
    assert preprocess_cli(ini, "--no-maps").returncode == 0
    path = tmp_path / "pre" / "sub01_ses1" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "subject": 2}))
    with pytest.raises(DataError, match=r"sub01_ses1/manifest.json: says subject 2, session 1, but its folder is sub01_ses1"):
        load_preprocessed(load_config(ini))
    result = preprocess_cli(ini, "--no-maps", "--subjects", "2")       # the index refuses the other folder
    assert result.returncode == 1 and "sub01_ses1/manifest.json: says subject 2" in result.stderr
    result = preprocess_cli(ini, "--no-maps")                          # selected: rebuilt
    assert result.returncode == 0 and result.stdout.startswith("sub01_ses1")
    assert json.loads(path.read_text())["subject"] == 1


@pytest.mark.slow
def test_set_data_keys_preprocess_beside_the_ini_sessions(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    session = {p.name: p.stat().st_mtime_ns for p in (root / "pre" / "sub01_ses1").iterdir()}
    p = run_cli("Preprocess.py", "-c", str(ini), "--set", "data.input_width=17", "--no-maps")
    assert p.returncode == 0, p.stderr
    assert (root / "pre" / "data.input_width=17" / "sub01_ses1" / "manifest.json").is_file()
    assert {q.name: q.stat().st_mtime_ns for q in (root / "pre" / "sub01_ses1").iterdir()} == session


def test_full_disk_during_force_keeps_the_old_session(finished, tmp_path, monkeypatch):
    """In-process: the disk fills while the new session's arrays are written; the old session stays
    complete and loadable, and the error names the file and says why."""
    root, ini = copy_of(finished, tmp_path)
    cfg = config.load_config(ini)
    folder = root / "pre" / "sub01_ses1"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    calls = []

    def full(fh, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return np.lib.format.write_array(fh, np.asanyarray(array))

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(errors.OutputError, match=rf"{folder}/\w+\.npy: cannot write \(no space left on device\)"):
        Preprocess.preprocess(cfg, force=True, subjects=[1])
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before        # nothing added, nothing changed
    assert len(session_store.load_preprocessed(cfg, subjects=[1])) == 1
