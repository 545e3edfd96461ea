"""SST-EmotionNet's inputs: electrode values to W x W maps, their normalisation, and the raw segments.

The one place that builds and normalises maps; Preprocess.py (whole sessions, NumPy), run.py (each
batch, torch, on the training device) and figures.py call it, so the maps a model trains on are the
maps on disk (to float32 rounding; tests/test_preprocess.py checks it).

    matrix = interpolation_matrix(32)                  # (1024, 62) float64, built once
    maps = electrodes_to_maps(de, matrix, 32)          # (N, 62, 5) -> (N, 32, 32, 5) float32, contiguous
    to_maps = MapBuilder(32, device); to_maps(x)       # the same product in torch, per batch
    de, eeg, stats = normalise_run(de, eeg, train)     # z-score with training-split statistics
    de, eeg = apply_normalisation(de, eeg, stats)      # a checkpoint's statistics on other data
    spec = temporal_spec(cfg); eeg = temporal_samples(raw, n_windows, spec, resample_matrix(spec))

Interpolation (decided here; the paper says "cubic"): scipy.interpolate.RectBivariateSpline with
kx = ky = 3, s = 0 - the tensor-product cubic spline through the 81 grid cells of datasets.py's 9x9
grid (empty cells 0) - evaluated on a W x W lattice spanning the grid corner to corner (pixel p at
grid coordinate p * 8 / (W - 1)). It is linear in the cell values: one (W*W, 62) matrix.
Resampling: scipy.signal.resample_poly (Kaiser-windowed FIR, up/down = temInput_length / segment
samples as a reduced fraction, e.g. 25/40 = 5/8), fed `context` raw samples either side of the
segment (edge samples repeated at trial ends) so the filter sees real signal instead of padding;
then cropped to the segment. Also linear: one matrix (`resample_matrix`).
Normalisation (decided here; the paper says nothing): z-score per electrode and band (DE) and per
electrode (raw EEG), with the mean and standard deviation of the training samples only.
SciPy's interpolate module loads only when the interpolation matrix is built, and the resampling
filter is written in NumPy (scipy.signal takes longer to import than a session takes to preprocess).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from datasets import CHANNELS, GRID_POSITIONS, GRID_SIZE, SAMPLING_RATE, WINDOW_S
from utils import Config, ConfigError

# ----------------------------------------------------------------------------- spatial maps


def grid_interpolation_matrix(width: int) -> np.ndarray:
    """(width*width, 81) float64: the 9x9 grid (cells row-major) -> width x width map, bicubic.

    Pixel (i, j) of the map is at grid coordinate (i, j) * 8 / (width - 1), so grid cell (r, c)
    falls exactly on pixel (r, c) * (width - 1) / 8 when 8 divides width - 1 (width 9, 17, 33, ...)
    and between pixels otherwise (width 32).
    """
    from scipy.interpolate import RectBivariateSpline

    if width < 2:
        raise ValueError(f"{width=} must be at least 2")
    cells = np.arange(GRID_SIZE, dtype=np.float64)
    coords = np.linspace(0, GRID_SIZE - 1, width)
    units = np.eye(GRID_SIZE * GRID_SIZE).reshape(-1, GRID_SIZE, GRID_SIZE)
    columns = [RectBivariateSpline(cells, cells, unit, kx=3, ky=3, s=0)(coords, coords).ravel() for unit in units]
    return np.stack(columns, axis=1)


def interpolation_matrix(width: int) -> np.ndarray:
    """(width*width, 62) float64: electrode values (datasets.CHANNELS order) -> width x width map.

    The electrodes sit on their GRID_POSITIONS cells, the other 19 cells are 0.
    """
    cell = GRID_POSITIONS[:, 0] * GRID_SIZE + GRID_POSITIONS[:, 1]
    return grid_interpolation_matrix(width)[:, cell]


def electrodes_to_maps(x: np.ndarray, matrix: np.ndarray, width: int) -> np.ndarray:
    """(N, width, width, C) float32 maps, C-contiguous, from (N, 62, C) electrode values.

    One product per sample into the output (np.matmul over the stack): the result is written in
    the order np.save writes, so saving it is one sequential copy.
    """
    if matrix.shape != (width * width, len(CHANNELS)) or x.ndim != 3 or x.shape[1] != len(CHANNELS):
        raise ValueError(f"{matrix.shape=} and {x.shape=} do not fit width {width} and {len(CHANNELS)} electrodes")
    n, _, c = x.shape
    maps = np.empty((n, width * width, c), dtype=np.float32)
    np.matmul(matrix.astype(np.float32, copy=False), x.astype(np.float32, copy=False), out=maps)
    return maps.reshape(n, width, width, c)  # pixel p = row * width + col


def save_maps_npy(fh, x: np.ndarray, matrix: np.ndarray, width: int, samples: int = 64) -> int:
    """Write electrodes_to_maps(x, matrix, width) to the open binary file `fh` as a .npy; returns its bytes.

    A few samples at a time through one reused buffer: the same values as the whole array (each
    sample is its own product), without holding it in memory (442 MB for a SEED session's maps,
    whose fresh pages cost as much as the products).
    """
    n, _, c = x.shape
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
              "shape": (n, width, width, c)}
    start = fh.tell()
    np.lib.format.write_array_header_1_0(fh, header)
    buffer = np.empty((min(samples, n), width * width, c), dtype=np.float32)
    matrix32 = matrix.astype(np.float32, copy=False)
    for first in range(0, n, samples):
        part = buffer[:min(samples, n - first)]
        np.matmul(matrix32, x[first:first + samples].astype(np.float32, copy=False), out=part)
        fh.write(memoryview(part).cast("B"))
    return fh.tell() - start


class MapBuilder:
    """electrodes_to_maps in torch, on the training device: (B, 62, C) -> (B, W, W, C), one product per batch."""

    def __init__(self, width: int, device):
        import torch

        self.width = width
        self.matrix_t = torch.from_numpy(interpolation_matrix(width).T.astype(np.float32)).to(device)  # (62, W*W)

    def __call__(self, x):
        if x is None:
            return None
        B, E, C = x.shape
        maps = x.transpose(1, 2) @ self.matrix_t               # (B, C, W*W)
        return maps.view(B, C, self.width, self.width).permute(0, 2, 3, 1)  # (B, W, W, C)


# ----------------------------------------------------------------------------- normalisation

NORMALISATION_AXES = {"de": (0,), "eeg": (0, 2)}    # (N, 62, bands): per electrode and band; (N, 62, T): per electrode


def zscore(x: np.ndarray, train: np.ndarray, axes: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x - mean) / std with mean/std over `axes` of the training samples only; float32 (z, mean, std)."""
    ref = x[train]
    mean = ref.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = ref.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)       # a constant electrode stays 0 instead of NaN
    return ((x - mean) / std).astype(np.float32), mean.astype(np.float32), std.astype(np.float32)


def normalise_run(de: np.ndarray, eeg: np.ndarray | None, train: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """z-score DE (N, 62, bands) and raw EEG (N, 62, T) or None with the statistics of the `train` rows.

    Returns (de, eeg, stats) with stats {"de_mean", "de_std"[, "eeg_mean", "eeg_std"]}, as saved in
    checkpoints for `apply_normalisation`.
    """
    stats = {}
    de, stats["de_mean"], stats["de_std"] = zscore(de, train, NORMALISATION_AXES["de"])
    if eeg is not None:
        eeg, stats["eeg_mean"], stats["eeg_std"] = zscore(eeg, train, NORMALISATION_AXES["eeg"])
    return de, eeg, stats


def apply_normalisation(de: np.ndarray, eeg: np.ndarray | None, stats: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """DE and raw EEG normalised with saved statistics (normalise_run's); arrays without statistics pass."""
    if "de_mean" in stats:
        de = ((de - np.asarray(stats["de_mean"])) / np.asarray(stats["de_std"])).astype(np.float32)
    if eeg is not None and "eeg_mean" in stats:
        eeg = ((eeg - np.asarray(stats["eeg_mean"])) / np.asarray(stats["eeg_std"])).astype(np.float32)
    return de, eeg


# ----------------------------------------------------------------------------- temporal samples


@dataclass(frozen=True)
class TemporalSpec:
    """Where each sample's raw segment lies and how it is resampled; counts of raw samples at 200 Hz."""

    window: int  # samples per DE window (200 SEED, 800 SEED-IV); segment j starts at j*window + offset
    offset: int
    length: int  # samples per segment (40 = 200 ms)
    points: int  # temInput_length, after resampling
    up: int  # points / length = up / down, reduced
    down: int
    context: int  # samples fed to the filter either side of the segment, a multiple of `down`


def _samples(cfg: Config, key: str) -> int:
    seconds = getattr(cfg.data, key)
    n = seconds * SAMPLING_RATE
    if abs(n - round(n)) > 1e-6:
        raise ConfigError(f"{cfg.source}: [data] {key}: expected a multiple of 1/{SAMPLING_RATE} s, got {seconds}")
    return round(n)


def temporal_spec(cfg: Config) -> TemporalSpec:
    """The TemporalSpec of a config; ConfigError if the segment does not fit inside its DE window."""
    data = cfg.data
    window = WINDOW_S[data.dataset] * SAMPLING_RATE
    length, offset = _samples(cfg, "temporal_window_s"), _samples(cfg, "temporal_offset_s")
    if length < 1 or offset + length > window:
        raise ConfigError(f"{cfg.source}: [data] temporal_offset_s + temporal_window_s: expected at most the "
                          f"{WINDOW_S[data.dataset]} s DE window of {data.dataset}, got "
                          f"{data.temporal_offset_s} + {data.temporal_window_s} s")
    ratio = Fraction(data.temInput_length, length)
    up, down = ratio.numerator, ratio.denominator
    # resample_poly's default filter reaches 10*max(up, down) upsampled samples either side
    context = down * math.ceil(10 * max(up, down) / (up * down))
    return TemporalSpec(window, offset, length, data.temInput_length, up, down, context)


def resample_matrix(spec: TemporalSpec) -> np.ndarray:
    """(length + 2*context, points) float64: a segment with its context -> the resampled segment.

    scipy.signal.resample_poly(x, up, down) as a matrix: its default filter, a Kaiser-windowed sinc
    (beta 5, 2 * 10 * max(up, down) + 1 taps, cutoff 1 / max(up, down) of Nyquist, unit gain at DC,
    times up), applied to x upsampled by `up` and decimated by `down`, with resample_poly's alignment
    (output sample k at input k * down / up). Written out in NumPy because importing scipy.signal
    takes longer than preprocessing a session; tests/test_preprocess.py holds it to resample_poly.
    Output point k sits at raw sample k * length / points of the segment.
    """
    up, down = spec.up, spec.down
    rate = max(up, down)
    half = 10 * rate
    taps = np.arange(2 * half + 1) - half
    h = np.sinc(taps / rate) / rate * np.kaiser(2 * half + 1, 5.0)
    h *= up / h.sum()
    pre = down - half % down                                # resample_poly's zero padding before the filter
    h = np.concatenate([np.zeros(pre), h])
    shift = (half + pre) // down                            # output samples it then drops
    n_in = spec.length + 2 * spec.context
    skip = spec.context * up // down
    out = np.arange(skip, skip + spec.points) + shift       # kept output samples, in upfirdn's numbering
    index = out[None, :] * down - np.arange(n_in)[:, None] * up
    inside = (index >= 0) & (index < len(h))
    return np.where(inside, h[np.clip(index, 0, len(h) - 1)], 0.0)


def temporal_samples(raw: dict[int, np.ndarray], n_windows: dict[int, int], spec: TemporalSpec,
                     resampling: np.ndarray) -> np.ndarray:
    """(N, 62, points) float32 resampled raw segments, uV, for n_windows[trial] windows of each trial.

    raw: trial -> (62, n) uV, long enough for every segment (checked by the caller).
    """
    span = np.arange(-spec.context, spec.length + spec.context)
    eeg = np.empty((sum(n_windows.values()), raw[next(iter(raw))].shape[0], spec.points), dtype=np.float32)
    first = 0
    for trial, n in n_windows.items():  # one gather and one product per trial, all its windows at once
        starts = np.arange(n) * spec.window + spec.offset
        index = np.clip(starts[:, None] + span, 0, raw[trial].shape[1] - 1)  # repeat edge samples at trial ends
        segments = raw[trial][:, index]  # (62, n, length + 2*context)
        resampled = segments.reshape(-1, segments.shape[-1]) @ resampling  # one GEMM per trial
        eeg[first: first + n] = resampled.reshape(segments.shape[0], n, spec.points).transpose(1, 0, 2)
        first += n
    return eeg
