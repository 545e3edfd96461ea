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
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import signal, stats
from scipy.interpolate import RectBivariateSpline

from Preprocess import differential_entropy, gaussian_de
from sst.config import load_config
from sst.data import datasets, electrodes, inputs, readers, synthetic
from sst.data.inputs import (
    electrodes_to_maps,
    grid_interpolation_matrix,
    interpolation_matrix,
    resample_matrix,
    save_maps_npy,
    temporal_samples,
    temporal_spec,
)
from sst.data.session_store import load_preprocessed
from sst.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
FRACTION = 0.03
PROGRESS = re.compile(r"^sub\d\d_ses\d: \d+ samples, [\d.]+ MB, [\d.]+ s$")


def write_ini(tmp_path: Path, dataset: str, dataset_root: Path, **data) -> Path:
    """A copy of SEED.ini / SEED_IV.ini with the paths under tmp_path and some [data] keys replaced."""
    text = (ROOT / ("SEED.ini" if dataset == "SEED" else "SEED_IV.ini")).read_text()
    paths = {"dataset_root": dataset_root, "preprocessed_root": tmp_path / "pre", "result_path": tmp_path / "results"}
    for key, value in {**paths, **data}.items():
        text, n = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text)
        assert n == 1, key
    ini = tmp_path / f"{dataset}_{len(list(tmp_path.glob('*.ini')))}.ini"
    ini.write_text(text)
    return ini


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


@pytest.mark.parametrize("width", [9, 17, 33])
def test_each_electrode_lands_on_its_cell(width):
    # pixel p sits at grid coordinate p * 8 / (width - 1): cell (r, c) is pixel (r, c) * (width - 1) / 8
    matrix = interpolation_matrix(width)
    assert matrix.shape == (width * width, 62) and matrix.dtype == np.float64
    step = (width - 1) // (electrodes.GRID_SIZE - 1)
    pixels = electrodes.GRID_POSITIONS[:, 0] * step * width + electrodes.GRID_POSITIONS[:, 1] * step
    np.testing.assert_allclose(matrix[pixels], np.eye(62), atol=1e-12)  # value e on its cell, 0 on the others'


@pytest.mark.parametrize("width", [2, 5, 9, 32, 33, 100])
def test_grid_interpolation_matrix_is_scipys_rect_bivariate_spline(width):
    """The NumPy spline equals RectBivariateSpline(kx=3, ky=3, s=0) pushed through as unit grids."""
    cells, coords = np.arange(9.0), np.linspace(0, 8, width)
    units = np.eye(81).reshape(81, 9, 9)
    scipys = np.stack([RectBivariateSpline(cells, cells, u, kx=3, ky=3, s=0)(coords, coords).ravel() for u in units],
                      axis=1)
    np.testing.assert_allclose(grid_interpolation_matrix(width), scipys, rtol=0, atol=1e-13)


def test_width_9_is_the_grid_itself():
    np.testing.assert_allclose(grid_interpolation_matrix(9), np.eye(81), atol=1e-12)


@pytest.mark.parametrize("width", [32, 17])
def test_constant_and_linear_fields_are_reproduced(width):
    matrix = grid_interpolation_matrix(width)
    np.testing.assert_allclose(matrix @ np.full(81, 3.5), 3.5, atol=1e-12)
    rows, cols = np.mgrid[0:9, 0:9]
    coords = np.linspace(0, 8, width)
    ramp = (matrix @ (2 * rows - cols).ravel().astype(float)).reshape(width, width)
    np.testing.assert_allclose(ramp, 2 * coords[:, None] - coords[None, :], atol=1e-9)  # cubic splines keep lines


def test_electrodes_to_maps_is_the_per_sample_product():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 62, 3))
    matrix = interpolation_matrix(32)
    maps = electrodes_to_maps(x, matrix, 32)
    assert maps.shape == (7, 32, 32, 3) and maps.dtype == np.float32
    for n in range(7):
        np.testing.assert_allclose(maps[n].reshape(1024, 3), matrix @ x[n], rtol=1e-5, atol=1e-5)
    pos = electrodes.GRID_POSITIONS[electrodes.CHANNELS.index("OZ")]
    onehot = np.zeros((1, 62, 1))
    onehot[0, electrodes.CHANNELS.index("OZ")] = 1
    peak = np.unravel_index(np.argmax(electrodes_to_maps(onehot, matrix, 32)[0, :, :, 0]), (32, 32))
    assert np.allclose(np.array(peak) * 8 / 31, pos, atol=0.5)  # width 32: the peak is the pixel nearest the cell


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="O_DIRECT is a Linux flag; elsewhere maps go through the page cache")
@pytest.mark.parametrize("width, channels, refused, direct", [
    (32, 5, None, True),            # a sample's maps are whole 4096-byte blocks: written with O_DIRECT
    (9, 25, None, False),           # 8100 bytes a sample: through the page cache
    (32, 25, "flag", False),        # a system without O_DIRECT
    (32, 5, "write", True),         # a file system that takes the flag, then refuses the first write
])
def test_save_maps_npy_writes_the_maps(tmp_path, monkeypatch, width, channels, refused, direct):
    fcntl = pytest.importorskip("fcntl")
    real_pwrite, seen = os.pwrite, []

    def pwrite(fd, data, offset):
        on = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        seen.append(on)
        if on and refused == "write":
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    if refused == "flag":
        monkeypatch.setattr(inputs, "direct_writes", lambda fd, on: False)
    x = np.random.default_rng(1).normal(size=(150, 62, channels))   # chunks of 64, 64 and 22 samples
    matrix = interpolation_matrix(width)
    with open(tmp_path / "maps.npy", "wb") as fh:
        n_bytes = save_maps_npy(fh, x, matrix, width)
        assert not fcntl.fcntl(fh.fileno(), fcntl.F_GETFL) & os.O_DIRECT      # left as it was found
    assert n_bytes == (tmp_path / "maps.npy").stat().st_size == 4096 + x.size // 62 * width * width * 4
    assert np.array_equal(np.load(tmp_path / "maps.npy", mmap_mode="r"), electrodes_to_maps(x, matrix, width))
    assert seen[0] == direct and not any(seen[1:]) if refused else all(s == direct for s in seen)


def test_pwrite_all_raises_instead_of_looping(tmp_path, monkeypatch):
    """A write that makes no progress, or an EINVAL under an O_DIRECT flag that will not clear, is an
    error rather than an endless retry."""
    from sst import fileio

    with open(tmp_path / "f", "wb") as fh:
        monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: 0)
        with pytest.raises(OSError, match="wrote nothing"):
            fileio.pwrite_all(fh.fileno(), memoryview(b"abc"), 0)
        if fileio.direct_writes(fh.fileno(), True):
            def refuse(fd, data, offset):
                raise OSError(errno.EINVAL, "Invalid argument")

            monkeypatch.setattr(os, "pwrite", refuse)
            monkeypatch.setattr(fileio, "direct_writes", lambda fd, on: on)     # clearing the flag fails silently
            with pytest.raises(OSError, match="Invalid argument"):
                fileio.pwrite_all(fh.fileno(), memoryview(bytes(4096)), 0)


def test_save_maps_npy_without_pwrite(tmp_path, monkeypatch):
    """Where os has no pwrite (Windows), the chunks are written after a seek, to the same file."""
    monkeypatch.delattr(os, "pwrite")
    x = np.random.default_rng(2).normal(size=(70, 62, 5))
    with open(tmp_path / "maps.npy", "wb") as fh:
        save_maps_npy(fh, x, interpolation_matrix(32), 32)
    assert np.array_equal(np.load(tmp_path / "maps.npy"), electrodes_to_maps(x, interpolation_matrix(32), 32))


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


@pytest.mark.parametrize("seconds, points, offset", [(0.2, 25, 0.0), (0.2, 25, 0.3), (0.25, 25, 0.0), (0.2, 40, 0.0),
                                                     (0.2, 13, 0.0), (0.5, 50, 0.1)])
def test_resample_matrix_is_scipys_resample_poly(seconds, points, offset):
    """The NumPy resampling filter equals scipy.signal.resample_poly's (pushed through as unit impulses)."""
    cfg = load_config(ROOT / "SEED.ini").replace(data={"temporal_window_s": seconds, "temInput_length": points,
                                                      "temporal_offset_s": offset})
    spec = temporal_spec(cfg)
    responses = signal.resample_poly(np.eye(spec.length + 2 * spec.context), spec.up, spec.down, axis=-1)
    skip = spec.context * spec.up // spec.down
    np.testing.assert_allclose(resample_matrix(spec), responses[:, skip:skip + points], rtol=0, atol=1e-14)


def test_resampling_keeps_a_slow_sinusoid_and_removes_a_fast_one():
    cfg = load_config(ROOT / "SEED.ini")
    spec = temporal_spec(cfg)
    assert (spec.length, spec.points, spec.up, spec.down) == (40, 25, 5, 8)
    n_windows, t = 12, np.arange(200 * 12 + 1) / 200
    raw = {1: np.tile(np.sin(2 * np.pi * 2 * t + 0.3), (62, 1)), 2: np.tile(np.sin(2 * np.pi * 85 * t), (62, 1))}
    eeg = temporal_samples(raw, {1: n_windows, 2: n_windows}, spec, resample_matrix(spec))
    assert eeg.shape == (2 * n_windows, 62, 25) and eeg.dtype == np.float32
    times = (np.arange(n_windows)[:, None] * 200 + np.arange(25)[None] * 40 / 25) / 200  # point k at sample k * 40/25
    np.testing.assert_allclose(eeg[:n_windows, 5], np.sin(2 * np.pi * 2 * times + 0.3), atol=1e-2)
    np.testing.assert_allclose(eeg[1:n_windows, 5], np.sin(2 * np.pi * 2 * times[1:] + 0.3), atol=1e-3)
    assert np.abs(eeg[n_windows + 1:]).max() < 0.01  # 85 Hz would alias to 40 Hz at 125 Hz: filtered out


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
    ini = write_ini(tmp_path, "SEED", seed_root)
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
    ini = write_ini(tmp_path, "SEED-IV", seed_iv_root)
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
    ini = write_ini(tmp_path, "SEED", seed_root)
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

    wider = write_ini(tmp_path, "SEED", seed_root, input_width=17)
    with pytest.raises(DataError, match=r"input_width = 32, but .* has 17; rerun `python Preprocess.py -c .* --force`"):
        load_preprocessed(load_config(wider))
    result = preprocess_cli(wider)  # a different [data] config is rebuilt without --force
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2
    check_session(tmp_path / "pre" / "sub01_ses1", "SEED", 1, width=17)


def test_no_raw_eeg(tmp_path):
    root = synthetic.write_seed(tmp_path / "SEED", subjects=(1, 2), sessions=(1,), trial_fraction=FRACTION, raw=False)
    ini = write_ini(tmp_path, "SEED", root)
    result = preprocess_cli(ini)
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stdout.splitlines() if not PROGRESS.match(line)]
    assert notices == [f"no raw EEG under {root / 'Preprocessed_EEG'}: only the spatial-spectral stream can be "
                       f"trained (set [model] streams = spectral)"]
    check_session(tmp_path / "pre" / "sub01_ses1", "SEED", 1, has_temporal=False)
    assert all(s.eeg is None for s in load_preprocessed(load_config(ini)))


def test_de_from_raw(seed_root, tmp_path):
    ini = write_ini(tmp_path, "SEED", seed_root, feature="de_raw")
    result = preprocess_cli(ini, "--subjects", "2")
    assert result.returncode == 0, result.stderr
    manifest, arrays = check_session(tmp_path / "pre" / "sub02_ses1", "SEED", 1)
    assert manifest["sources"]["features"] is None and manifest["data"]["feature"] == "de_raw"
    assert np.isfinite(arrays["de"]).all() and 0 < arrays["de"].mean() < 10  # nats of band-passed uV


# ----------------------------------------------------------------------------- missing output
# Every bad input of the command line (files, keys, shapes, INI values, output folders) is a case of
# tests/test_bad_inputs.py.


def test_load_preprocessed_without_maps_names_the_command(tmp_path):
    ini = write_ini(tmp_path, "SEED", tmp_path / "SEED")
    with pytest.raises(DataError, match=r"no preprocessed sessions; run `python Preprocess.py -c "):
        load_preprocessed(load_config(ini))


# ----------------------------------------------------------------------------- --no-maps, checks of what is written


@pytest.mark.slow
def test_no_maps_writes_what_run_reads_and_maps_later_rebuild(seed_root, tmp_path):
    ini = write_ini(tmp_path, "SEED", seed_root)
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
    huge = write_ini(tmp_path, "SEED", tmp_path / "SEED", input_width=100000)
    with pytest.raises(ConfigError, match=r"\[data\] input_width = 100000 .* needs about [\d,.]+ GiB of memory, "
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
    ini = write_ini(tmp_path, "SEED", seed_root)
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
