"""Benchmark: Preprocess.py end to end on full-size SEED sessions against a per-sample reference.

    python bench/preprocess.py                  # 2 full-size synthetic SEED sessions (about 1 GB in a temp folder)
    python bench/preprocess.py --sessions 3 --ref-samples 40

Writes full-size synthetic SEED sessions of subject 1 in the distributed format (synthetic.py: 15
trials, 3394 windows, .mat files of 67 MB of features and 322 MB of raw EEG each; not timed), then
  the whole command     `python Preprocess.py -c <ini> --force` (interpreter start, imports, .mat
                        reading, maps, checks, .npy writing with fsync), wall time per session, for
                        one session alone (start-up counted whole) and for all of them (start-up
                        shared); then all of them with --no-maps (only what run.py reads)
  its phases            the same work in this process (Preprocess.preprocess, its phases timed by wrapping): the
                        share of reading, computing, checking and writing
  per-sample reference  what common EEG toolkits do, sample by sample: resample the segment
                        (scipy.signal.resample_poly), then for each of the 5 DE bands and 25 time
                        points scipy.interpolate.griddata(method='cubic') of the 62 electrodes onto
                        the 9x9 grid and scipy.ndimage.zoom(order=3) to W x W. Timed on
                        --ref-samples samples of the same session and extrapolated to it, three times
                        (before, between and after the commands: the fastest counts); reading and
                        writing are not counted for it (it would only lose more).
and prints bytes read and written per session and the ratios.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

# One BLAS thread for the reference unless the caller sets it: griddata makes thousands of tiny
# LAPACK calls, and with 2 OpenBLAS threads each takes ~1 s when another process holds a core,
# which would time the machine's load instead of the method. Set before NumPy loads OpenBLAS.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from scipy import ndimage, signal  # noqa: E402
from scipy.interpolate import griddata  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import Preprocess  # noqa: E402
from common import cpu_model  # noqa: E402  (bench/common.py)
from sst.config import load_config
from sst.data import electrodes, readers, session_store, synthetic


def reference(de_samples: np.ndarray, segments: np.ndarray, spec, width: int) -> None:
    """Per-sample maps as common toolkits build them; de_samples (n, 62, 5), segments (n, 62, length)."""
    grid_r, grid_c = np.mgrid[0:electrodes.GRID_SIZE, 0:electrodes.GRID_SIZE]
    for de, segment in zip(de_samples, segments):
        resampled = signal.resample_poly(segment, spec.up, spec.down, axis=-1)  # (62, points)
        for frame in np.concatenate([de, resampled], axis=1).T:  # 5 bands + 25 time points, (62,) each
            grid = griddata(electrodes.GRID_POSITIONS, frame, (grid_r, grid_c), method="cubic", fill_value=0.0)
            ndimage.zoom(grid, width / electrodes.GRID_SIZE, order=3)


def paths(folder: Path) -> list[str]:
    """--set overrides that point SEED.ini's [path] keys into `folder`."""
    return [f"path.dataset_root={folder / 'SEED'}", f"path.preprocessed_root={folder / 'pre'}",
            f"path.result_path={folder / 'results'}"]


def command_seconds(overrides: list[str], *args: str) -> float:
    sets = [arg for o in overrides for arg in ("--set", o)]
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "Preprocess.py"), "-c", str(ROOT / "SEED.ini"), *sets, "--force", *args],
                   check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


# Preprocess.preprocess's phases, timed by wrapping the module functions it calls (the bench's hook, not
# the production code's): reading the .mat files, computing the arrays, checking them, writing them.
PHASES = {"read": "_load_session", "compute": "session_arrays", "check": "_check_values", "write": "_write_session"}


@contextmanager
def phase_timings():
    """Yield {phase: seconds} that Preprocess.preprocess calls fill while the context is open."""
    timings = dict.fromkeys(PHASES, 0.0)
    originals = {name: getattr(Preprocess, name) for name in PHASES.values()}

    def timed(phase, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                timings[phase] += time.perf_counter() - start
        return wrapper

    for phase, name in PHASES.items():
        setattr(Preprocess, name, timed(phase, originals[name]))
    try:
        yield timings
    finally:
        for name, function in originals.items():
            setattr(Preprocess, name, function)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=2, choices=(1, 2, 3), help="full-size sessions (default 2)")
    parser.add_argument("--ref-samples", type=int, default=20, help="samples timed for the per-sample reference")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the command (median; default 3)")
    args = parser.parse_args()

    print(f"CPU: {cpu_model()}; {len(os.sched_getaffinity(0))} usable CPUs; load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; numpy {np.__version__}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bench_preprocess_") as tmp:
        folder = Path(tmp)
        sessions = tuple(range(1, args.sessions + 1))
        synthetic.write_seed(folder / "SEED", subjects=(1,), sessions=sessions)
        overrides = paths(folder)
        cfg = load_config(ROOT / "SEED.ini", overrides)
        recordings = readers.find_recordings("SEED", folder / "SEED")
        read = sum(p.stat().st_size for r in recordings for p in (r.features, r.raw)) / len(recordings)

        with phase_timings() as timings:
            Preprocess.preprocess(cfg, force=True)                      # also warms the page cache for the command
        session = session_store.load_preprocessed(cfg, sessions=[1])[0]
        spec = Preprocess.temporal_spec(cfg)
        raw = readers.read_raw(recordings[0].raw)[1]
        starts = np.arange(args.ref_samples) * spec.window + spec.offset
        segments = raw[:, starts[:, None] + np.arange(spec.length)].transpose(1, 0, 2)  # (n_ref, 62, length)
        de = np.array(session.de[:args.ref_samples], dtype=np.float64)
        del raw

        def per_sample_reference() -> float:
            start = time.perf_counter()
            reference(de, segments, spec, cfg.data.input_width)
            return (time.perf_counter() - start) / args.ref_samples

        # timed before, between and after the commands; the fastest counts, so a slow moment of the
        # machine (background writeback, a busy neighbour) cannot flatter the ratio
        references = [per_sample_reference()]
        single = statistics.median(command_seconds(overrides, "--sessions", "1") for _ in range(args.repeats))
        command = statistics.median(command_seconds(overrides) for _ in range(args.repeats)) / len(sessions)
        references.append(per_sample_reference())
        no_maps = statistics.median(command_seconds(overrides, "--no-maps") for _ in range(args.repeats)) / len(sessions)
        Preprocess.preprocess(cfg, force=True)                          # the maps back, for the byte count
        written = sum((folder / "pre" / f"sub01_ses{k}" / f"{name}.npy").stat().st_size
                      for k in sessions for name in session_store.ARRAYS) / len(sessions)
        references.append(per_sample_reference())
        per_session_ref = min(references) * len(session.label)

    total = sum(timings.values())
    print(f"SEED.ini, {len(sessions)} full-size session(s) of {len(session.label)} windows; per session: "
          f"{read / 1e6:.1f} MB read (.mat), {written / 1e6:.1f} MB written (.npy)")
    print(f"command      : python Preprocess.py -c <ini> --force: {command:.2f} s per session over {len(sessions)} "
          f"(median of {args.repeats}), --no-maps: {no_maps:.2f} s; one session alone (start-up included): "
          f"{single:.2f} s")
    print(f"phases       : {total / len(sessions):.2f} s per session in one process: "
          + ", ".join(f"{k} {v / total:.0%}" for k, v in timings.items()))
    print(f"per-sample   : {min(references) * 1e3:.1f} ms/sample on {args.ref_samples} samples (fastest of "
          f"{', '.join(f'{r * 1e3:.1f}' for r in references)}), extrapolated {per_session_ref:.1f} s per session")
    print(f"ratio        : {per_session_ref / single:.0f}x for a one-session command, "
          f"{per_session_ref / command:.0f}x end to end per session, "
          f"{per_session_ref / no_maps:.0f}x with --no-maps, {per_session_ref / (total / len(sessions)):.0f}x "
          f"in one process")


if __name__ == "__main__":
    main()
