"""Benchmark: one full-size SEED session (3394 windows, both streams) from loaded arrays to maps.

    python bench/preprocess.py [--ref-samples 20] [--repeats 4]
    OPENBLAS_NUM_THREADS=2 python bench/preprocess.py     # both cores for BLAS (default: one, see below)

Builds the session in memory (random DE and raw EEG of the real shapes: 15 trials, T windows of
1 s, N = 200*T + 1 raw samples; no disk), then times
  this project's path   Preprocess.session_arrays: gather all segments, one resampling product,
                        one interpolation product per stream (the first run pays the page faults
                        of 442 MB of fresh output, then the median of the others; the interpolation
                        and resampling matrices are built once, timed apart)
  per-sample reference  what common EEG toolkits do, sample by sample: resample the segment
                        (scipy.signal.resample_poly), then for each of the 5 DE bands and 25 time
                        points scipy.interpolate.griddata(method='cubic') of the 62 electrodes onto
                        the 9x9 grid and scipy.ndimage.zoom(order=3) to W x W. Timed on
                        --ref-samples samples and extrapolated to the session.
and prints samples/s for both, the ratio, and the bytes Preprocess.py writes per session.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

# One BLAS thread unless the caller sets it: griddata makes thousands of tiny LAPACK calls, and
# with 2 OpenBLAS threads each takes ~1 s when another process holds a core (measured here), which
# would time the machine's load instead of the method. Must be set before NumPy loads OpenBLAS.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from scipy import ndimage, signal  # noqa: E402
from scipy.interpolate import griddata  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets import CHANNELS, GRID_POSITIONS, GRID_SIZE, SAMPLING_RATE, TRIAL_LABELS, TRIAL_WINDOWS  # noqa: E402
from Preprocess import (ARRAYS, interpolation_matrix, resample_matrix, session_arrays,  # noqa: E402
                        temporal_spec)
from utils import load_config  # noqa: E402

from common import cpu_model  # noqa: E402  (bench/common.py)

NPY_HEADER = 128  # bytes np.save puts before the data of these arrays



def full_session(rng: np.random.Generator) -> tuple[dict, dict, np.ndarray]:
    """(de, raw, labels) of a full-size SEED session: trial -> (62, T, 5) and (62, 200*T + 1) float64."""
    windows = TRIAL_WINDOWS["SEED"][1]
    de = {k: 20 + rng.standard_normal((len(CHANNELS), t, 5)) for k, t in enumerate(windows, start=1)}
    raw = {k: 20 * rng.standard_normal((len(CHANNELS), SAMPLING_RATE * t + 1)) for k, t in enumerate(windows, start=1)}
    return de, raw, np.array(TRIAL_LABELS["SEED"][1])


def reference(de_samples: np.ndarray, segments: np.ndarray, spec, width: int) -> None:
    """Per-sample maps as common toolkits build them; de_samples (n, 62, 5), segments (n, 62, length)."""
    grid_r, grid_c = np.mgrid[0:GRID_SIZE, 0:GRID_SIZE]
    for de, segment in zip(de_samples, segments):
        resampled = signal.resample_poly(segment, spec.up, spec.down, axis=-1)  # (62, points)
        for frame in np.concatenate([de, resampled], axis=1).T:  # 5 bands + 25 time points, (62,) each
            grid = griddata(GRID_POSITIONS, frame, (grid_r, grid_c), method="cubic", fill_value=0.0)
            ndimage.zoom(grid, width / GRID_SIZE, order=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref-samples", type=int, default=20, help="samples timed for the per-sample reference")
    parser.add_argument("--repeats", type=int, default=4, help="runs of this project's path (the first is cold)")
    args = parser.parse_args()

    cfg = load_config(Path(__file__).resolve().parents[1] / "SEED.ini")
    width, spec = cfg.data.input_width, temporal_spec(cfg)
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"CPU: {cpu_model()}; {os.cpu_count()} logical CPUs, {len(os.sched_getaffinity(0))} usable; "
          f"BLAS threads: {threads}; load average before the run: {load}")
    if os.getloadavg()[0] > len(os.sched_getaffinity(0)):
        print("warning: the machine is busy (load above its CPU count): timings are inflated and noisy")
    print(f"numpy {np.__version__}, Python {platform.python_version()}; SEED session, W = {width}, "
          f"{spec.length} -> {spec.points} points per segment")

    rng = np.random.default_rng(0)
    de, raw, labels = full_session(rng)
    start = time.perf_counter()
    interpolation, resampling = interpolation_matrix(width), resample_matrix(spec)
    setup = time.perf_counter() - start

    # the reference first: BLAS threads left spinning by our path would slow it down
    n_ref = args.ref_samples
    de_samples = np.stack([de[1][:, j] for j in range(n_ref)])  # (n_ref, 62, 5)
    starts = np.arange(n_ref) * spec.window + spec.offset
    segments = raw[1][:, starts[:, None] + np.arange(spec.length)].transpose(1, 0, 2)  # (n_ref, 62, length)
    start = time.perf_counter()
    reference(de_samples, segments, spec, width)
    ref_per_sample = (time.perf_counter() - start) / n_ref

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        arrays = session_arrays(de, raw, labels, spec, interpolation, resampling, width)
        times.append(time.perf_counter() - start)
    n = len(arrays["label"])
    cold, warm = times[0], float(np.median(times[1:]))

    n_bytes = sum(arrays[name].nbytes + NPY_HEADER for name in ARRAYS)
    print(f"matrices (built once per run): {setup:.3f} s")
    print(f"this project : {n} samples; first run {cold:.3f} s (fresh memory: page faults), then median "
          f"{warm:.3f} s of {args.repeats - 1} ({', '.join(f'{t:.3f}' for t in times[1:])}) = {n / warm:,.0f} samples/s")
    print(f"per-sample   : {ref_per_sample * 1e3:.1f} ms/sample on {n_ref} samples, extrapolated "
          f"{ref_per_sample * n:.1f} s per session = {1 / ref_per_sample:,.1f} samples/s")
    print(f"ratio        : {ref_per_sample * n / warm:,.0f}x (warm), {ref_per_sample * n / cold:,.0f}x (first run)")
    print(f"written per full-size session: {n_bytes / 1e6:.1f} MB ("
          + ", ".join(f"{name} {arrays[name].nbytes / 1e6:.1f}" for name in ARRAYS) + " MB, + manifest.json)")


if __name__ == "__main__":
    main()
