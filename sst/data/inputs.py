"""SST-EmotionNet's inputs: electrode values to W x W maps, their normalisation, and the raw segments.

The one place that builds and normalises maps; Preprocess.py (whole sessions, NumPy), run.py (each
batch, torch, on the training device) and figures.py call it, so the maps a model trains on are the
maps on disk (to float32 rounding; tests/test_preprocess.py checks it).

    matrix = interpolation_matrix(32)                  # (1024, 62) float64, built once
    maps = electrodes_to_maps(de, matrix, 32)          # (N, 62, 5) -> (N, 32, 32, 5) float32, contiguous
    to_maps = MapBuilder(32, device); to_maps(x)       # the same product in torch, per batch
    arrays, stats = normalise_run({"de": de, "eeg": eeg}, train)   # z-score with training-split statistics
    arrays = apply_normalisation(arrays, stats)        # a checkpoint's statistics on other data
    spec = temporal_spec(cfg); eeg = temporal_samples(raw, n_windows, spec, resample_matrix(spec))

Interpolation (decided here; the paper says "cubic"): the spline of scipy.interpolate's
RectBivariateSpline with kx = ky = 3, s = 0 (computed in NumPy) - the tensor-product cubic spline
through the 81 grid cells of sst/data/electrodes.py's 9x9 grid (empty cells 0) - evaluated on a W x W lattice
spanning the grid corner to corner (pixel p at grid coordinate p * 8 / (W - 1)). It is linear in
the cell values: one (W*W, 62) matrix.
Resampling: scipy.signal.resample_poly (Kaiser-windowed FIR, up/down = temInput_length / segment
samples as a reduced fraction, e.g. 25/40 = 5/8), fed `context` raw samples either side of the
segment (edge samples repeated at trial ends) so the filter sees real signal instead of padding;
then cropped to the segment. Also linear: one matrix (`resample_matrix`).
Normalisation (decided here; the paper says nothing): z-score per electrode and band (DE) and per
electrode (raw EEG), with the mean and standard deviation of the training samples only.
The spline and the resampling filter are written in NumPy: importing scipy.interpolate and
scipy.signal took longer than building a session's maps (tests check both against SciPy).
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from sst.config import Config
from sst.data import datasets
from sst.data.electrodes import CHANNELS, GRID_POSITIONS, GRID_SIZE, SAMPLING_RATE
from sst.errors import ConfigError
from sst.fileio import BLOCK, aligned_empty, direct_writes, pwrite_all

# ----------------------------------------------------------------------------- spatial maps


def bspline_basis(x: np.ndarray, knots: np.ndarray, degree: int) -> np.ndarray:
    """(len(x), len(knots) - degree - 1) float64: each B-spline of `degree` on `knots` at the points x.

    Cox-de Boor's recursion; a point on the last knot belongs to the last non-empty interval (as in
    FITPACK), and 0/0 terms of repeated knots are 0.
    """
    x = np.asarray(x, dtype=np.float64)[:, None]
    t = np.asarray(knots, dtype=np.float64)
    basis = ((t[:-1] <= x) & (x < t[1:])).astype(np.float64)      # degree 0: the knot interval holding x
    basis[x[:, 0] == t[-1], np.flatnonzero(t[:-1] < t[1:])[-1]] = 1.0
    for k in range(1, degree + 1):
        rise, fall = t[k:-1] - t[:-k - 1], t[k + 1:] - t[1:-k]
        with np.errstate(divide="ignore", invalid="ignore"):
            left = np.where(rise > 0, (x - t[:-k - 1]) / rise, 0.0)
            right = np.where(fall > 0, (t[k + 1:] - x) / fall, 0.0)
        basis = left * basis[:, :-1] + right * basis[:, 1:]
    return basis


def cubic_spline_matrix(n: int, coords: np.ndarray) -> np.ndarray:
    """(len(coords), n) float64: values at 0..n-1 -> their interpolating cubic spline at `coords`.

    The spline FITPACK fits with k = 3, s = 0 (scipy's RectBivariateSpline along each axis): knots at
    the two ends (4 times each) and at the interior points 2..n-3, i.e. the not-a-knot spline.
    """
    points = np.arange(n, dtype=np.float64)
    knots = np.concatenate([np.repeat(points[0], 4), points[2:-2], np.repeat(points[-1], 4)])
    collocation = bspline_basis(points, knots, 3)        # (n, n): spline coefficients -> values at the points
    return np.linalg.solve(collocation.T, bspline_basis(coords, knots, 3).T).T


def grid_interpolation_matrix(width: int) -> np.ndarray:
    """(width*width, 81) float64: the 9x9 grid (cells row-major) -> width x width map, bicubic.

    Pixel (i, j) of the map is at grid coordinate (i, j) * 8 / (width - 1), so grid cell (r, c)
    falls exactly on pixel (r, c) * (width - 1) / 8 when 8 divides width - 1 (width 9, 17, 33, ...)
    and between pixels otherwise (width 32). The tensor-product spline of RectBivariateSpline(kx=3,
    ky=3, s=0) is the 1-D spline along rows, then along columns: pixel (i, j) takes a[i, r] * a[j, c]
    of cell (r, c), the Kronecker product (equal to SciPy's to 1e-15, tested).
    """
    if width < 2:
        raise ValueError(f"{width=} must be at least 2")
    along = cubic_spline_matrix(GRID_SIZE, np.linspace(0, GRID_SIZE - 1, width))  # (width, 9)
    return np.kron(along, along)


def interpolation_matrix(width: int) -> np.ndarray:
    """(width*width, 62) float64: electrode values (electrodes.CHANNELS order) -> width x width map.

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


def npy_header(shape: tuple, dtype, size: int = BLOCK) -> bytes:
    """A .npy (version 1.0) header for a C-order array, padded with spaces to `size` bytes so that the
    data starts on a block boundary (numpy pads to 64; readers take any length)."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                 "shape": tuple(shape)})
    length = size - 10                                   # after the magic (6), version (2) and length (2)
    if len(text) >= length:
        raise ValueError(f"a .npy header of {len(text)} characters does not fit in {size} bytes")
    return b"\x93NUMPY\x01\x00" + length.to_bytes(2, "little") + text.ljust(length - 1).encode("latin1") + b"\n"


def save_maps_npy(fh, x: np.ndarray, matrix: np.ndarray, width: int, samples: int = 64) -> int:
    """Write electrodes_to_maps(x, matrix, width) to the open binary file `fh` as a .npy; returns its bytes.

    A few samples at a time through two reused buffers: the same values as the whole array (each
    sample is its own product), without holding it in memory (442 MB for a SEED session's maps).
    One thread writes a chunk while the next is computed (both release the GIL); a write error is
    raised here. When a sample's maps fill whole blocks (W*W*C a multiple of 1024: W = 32, 64, ...)
    the chunks go to the file with O_DIRECT, around the page cache (fileio.direct_writes: fresh page
    cache is what made these writes slow and erratic on the machine measured); otherwise, or where the
    file system refuses O_DIRECT, through it.
    """
    n, _, c = x.shape
    start = fh.tell()
    fh.write(npy_header((n, width, width, c), np.float32))
    fh.flush()
    fd, position = fh.fileno(), fh.tell()
    buffers = [aligned_empty((min(samples, n), width * width, c), np.float32) for _ in range(2)]
    writing = [None, None]     # the pending write of each buffer
    matrix32 = matrix.astype(np.float32, copy=False)
    direct = False
    try:
        direct = position % BLOCK == 0 and (width * width * c * 4) % BLOCK == 0 and direct_writes(fd, True)
        with ThreadPoolExecutor(max_workers=1) as writer:
            for chunk, first in enumerate(range(0, n, samples)):
                slot = chunk % 2
                if writing[slot] is not None:
                    writing[slot].result()           # its last chunk is in the file: reuse the buffer
                part = buffers[slot][:min(samples, n - first)]
                np.matmul(matrix32, x[first:first + samples].astype(np.float32, copy=False), out=part)
                writing[slot] = writer.submit(pwrite_all, fd, memoryview(part).cast("B"), position)
                position += part.nbytes
            for pending in writing:
                if pending is not None:
                    pending.result()
    finally:
        if direct:
            direct_writes(fd, False)
    fh.seek(position)
    return position - start


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


def normalise_run(arrays: dict[str, np.ndarray], train: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """z-score a run's source arrays ({"de": (N, 62, bands), "eeg": (N, 62, T)}, either or both) with the
    statistics of the `train` rows.

    Returns (arrays, stats) with stats {"de_mean", "de_std"[, "eeg_mean", "eeg_std"]}, as saved in
    checkpoints for `apply_normalisation`.
    """
    out, stats = {}, {}
    for source, x in arrays.items():
        out[source], stats[f"{source}_mean"], stats[f"{source}_std"] = zscore(x, train, NORMALISATION_AXES[source])
    return out, stats


def apply_normalisation(arrays: dict[str, np.ndarray], stats: dict) -> dict[str, np.ndarray]:
    """Source arrays normalised with saved statistics (normalise_run's); arrays without statistics pass."""
    out = {}
    for source, x in arrays.items():
        mean, std = stats.get(f"{source}_mean"), stats.get(f"{source}_std")
        out[source] = x if mean is None else ((x - np.asarray(mean)) / np.asarray(std)).astype(np.float32)
    return out


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
        raise ConfigError(f"{cfg.where('data', key)}: expected a multiple of 1/{SAMPLING_RATE} s, got {seconds}")
    return round(n)


def temporal_spec(cfg: Config) -> TemporalSpec:
    """The TemporalSpec of a config; ConfigError if the segment does not fit inside its DE window."""
    data = cfg.data
    window_s = datasets.get(data.dataset).window_s
    window = window_s * SAMPLING_RATE
    length, offset = _samples(cfg, "temporal_window_s"), _samples(cfg, "temporal_offset_s")
    if length < 1 or offset + length > window:
        raise ConfigError(f"{cfg.origin('data', 'temporal_offset_s', 'temporal_window_s')}: [data] temporal_offset_s + "
                          f"temporal_window_s: expected at most the {window_s} s DE window of "
                          f"{data.dataset}, got "
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
