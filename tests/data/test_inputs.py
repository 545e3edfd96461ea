"""sst/data/inputs.py: maps (the spline against SciPy's), normalisation from training samples, raw segments, .npy writes."""
import errno
import os

import numpy as np
import pytest
from scipy import signal
from scipy.interpolate import RectBivariateSpline

from conftest import ROOT
from sst import config
from sst.config import load_config
from sst.data import electrodes, inputs
from sst.data.inputs import (
    electrodes_to_maps,
    grid_interpolation_matrix,
    interpolation_matrix,
    resample_matrix,
    save_maps_npy,
    temporal_samples,
    temporal_spec,
)


def test_zscore_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, size=(100, 62, 5))
    train = np.arange(60)
    z, mean, std = inputs.zscore(x, train, axes=(0,))
    assert np.allclose(z[train].mean(0), 0, atol=1e-5) and np.allclose(z[train].std(0), 1, atol=1e-4)
    x2 = x.copy()
    x2[60:] += 100  # changing test samples must not change the statistics
    _, mean2, std2 = inputs.zscore(x2, train, axes=(0,))
    assert np.array_equal(mean, mean2) and np.array_equal(std, std2)


@pytest.mark.slow
def test_batch_maps_equal_the_stored_maps(tiny_seed):
    """run.py builds each batch's maps from electrode values; they must be Preprocess.py's maps."""
    import torch

    from sst.data import session_store

    root, ini = tiny_seed
    cfg = config.load_config(ini)
    session = session_store.load_preprocessed(cfg, subjects=[1], sessions=[1])[0]
    build = inputs.MapBuilder(cfg.data.input_width, torch.device("cpu"))
    for arrays, stored in ((session.de, "spectral.npy"), (session.eeg, "temporal.npy")):
        maps = build(torch.tensor(np.asarray(arrays[3:40]))).numpy()  # a copy: the memmap is read-only
        expected = np.load(session.path / stored)[3:40]
        assert maps.shape == expected.shape
        assert np.allclose(maps, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


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


def test_save_maps_npy_without_pwrite(tmp_path, monkeypatch):
    """Where os has no pwrite (Windows), the chunks are written after a seek, to the same file."""
    monkeypatch.delattr(os, "pwrite")
    x = np.random.default_rng(2).normal(size=(70, 62, 5))
    with open(tmp_path / "maps.npy", "wb") as fh:
        save_maps_npy(fh, x, interpolation_matrix(32), 32)
    assert np.array_equal(np.load(tmp_path / "maps.npy"), electrodes_to_maps(x, interpolation_matrix(32), 32))


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
