"""Build SST-EmotionNet's inputs from SEED / SEED-IV: spatial-spectral and spatial-temporal maps.

    python Preprocess.py -c SEED.ini                        # every subject and session
    python Preprocess.py -c SEED_IV.ini --subjects 1,2 --sessions 1
    python Preprocess.py -c SEED.ini --force                # redo sessions already written

One sample = one DE window of a trial (1 s SEED, 4 s SEED-IV). Per sample:
  spectral  the 5-band DE of the window ([data] feature: de_LDS, de_movingAve, or de_raw = computed
            here from the raw EEG), each band's 62 electrode values placed on the 9x9 grid (empty
            cells 0) and interpolated bicubically to W x W (W = [data] input_width)
  temporal  the raw EEG segment of window j, [j*window + temporal_offset_s, + temporal_window_s),
            resampled (anti-aliased) to temInput_length points, each point's 62 values mapped to
            W x W the same way (absent when the dataset has no raw EEG folder)

Interpolation (decided here; the paper says "cubic"): scipy.interpolate.RectBivariateSpline with
kx = ky = 3, s = 0 - the tensor-product cubic spline through the 81 grid cells - evaluated on a
W x W lattice spanning the grid corner to corner (pixel p at grid coordinate p * 8 / (W - 1)).
It is linear in the cell values, so it is one (W*W, 62) matrix, built once (`interpolation_matrix`)
and applied to a whole session in one product (`electrodes_to_maps`).
Resampling: scipy.signal.resample_poly (Kaiser-windowed FIR, up/down = temInput_length /
segment samples as a reduced fraction, e.g. 25/40 = 5/8), fed `context` raw samples either side
of the segment (edge samples repeated at trial ends) so the filter sees real signal instead of
padding; then cropped to the segment. Also linear: one matrix (`resample_matrix`).

Output, per subject-session, under [path] preprocessed_root:
    sub01_ses1/spectral.npy   (N, W, W, 5) float32    DE maps
               temporal.npy   (N, W, W, P) float32    raw EEG maps, uV (without raw EEG: absent)
               de.npy         (N, 62, 5) float32      the same DE per electrode, unnormalised
               eeg.npy        (N, 62, P) float32      the same resampled segments per electrode
               label.npy      (N,) int64              0-based class (datasets.CLASS_NAMES)
               trial.npy      (N,) int64              1-based trial number
               manifest.json  [data] config, shapes, dtypes, sources, bytes; written last: its
                              presence marks the session complete
    manifest.json             the complete sessions that match the config
run.py z-scores de/eeg per electrode with training-split statistics and maps each batch through
`interpolation_matrix`, which equals the stored maps: electrodes_to_maps(de) == spectral.
Every file is written atomically; a rerun skips complete sessions built with the same [data]
config (others are rebuilt) unless --force.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy import signal
from scipy.interpolate import RectBivariateSpline

from datasets import (BANDS, BANDS_HZ, CHANNELS, FEATURE_FOLDERS, GRID_POSITIONS, GRID_SIZE, RAW_FOLDER,
                      SAMPLING_RATE, WINDOW_S, Recording, find_recordings, read_features, read_labels, read_raw)
from utils import (Config, ConfigError, DataError, check_output_folder, cli_main, git_commit, int_list, load_config, make_folder,
                   remove_stale_temporaries, save_npy, write_json)

MANIFEST = "manifest.json"
ARRAYS = ("spectral", "temporal", "de", "eeg", "label", "trial")  # .npy files of a session, in write order
SESSION_FOLDER = re.compile(r"^sub(\d+)_ses(\d+)$")

# ----------------------------------------------------------------------------- spatial maps


def grid_interpolation_matrix(width: int) -> np.ndarray:
    """(width*width, 81) float64: the 9x9 grid (cells row-major) -> width x width map, bicubic.

    Pixel (i, j) of the map is at grid coordinate (i, j) * 8 / (width - 1), so grid cell (r, c)
    falls exactly on pixel (r, c) * (width - 1) / 8 when 8 divides width - 1 (width 9, 17, 33, ...)
    and between pixels otherwise (width 32).
    """
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
    """(N, width, width, C) float32 maps from (N, 62, C) electrode values, in one matrix product.

    The result may be a strided view (pixel-major in memory, as the product leaves it): np.save
    writes it in C order, torch.from_numpy accepts it; copy it if a contiguous array is needed.
    """
    if matrix.shape != (width * width, len(CHANNELS)) or x.ndim != 3 or x.shape[1] != len(CHANNELS):
        raise ValueError(f"{matrix.shape=} and {x.shape=} do not fit width {width} and {len(CHANNELS)} electrodes")
    n, _, c = x.shape
    # one large GEMM over the whole session: np.matmul(matrix, x) would make N small BLAS calls,
    # which is slow when BLAS threads compete with other processes for the cores
    maps = np.einsum("pe,nec->npc", matrix.astype(np.float32), x.astype(np.float32, copy=False), optimize=True)
    return maps.reshape(n, width, width, c)  # pixel p = row * width + col


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

    Built by pushing unit impulses through scipy.signal.resample_poly once; output point k sits at
    raw sample k * length / points of the segment.
    """
    n_in = spec.length + 2 * spec.context
    responses = signal.resample_poly(np.eye(n_in), spec.up, spec.down, axis=-1)  # row i: response to sample i
    skip = spec.context * spec.up // spec.down
    return responses[:, skip: skip + spec.points]


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


def gaussian_de(variance: np.ndarray) -> np.ndarray:
    """Differential entropy in nats of a Gaussian with this variance: 0.5 * ln(2*pi*e*variance)."""
    return 0.5 * np.log(2 * np.pi * np.e * variance)


def differential_entropy(raw: np.ndarray, bands_hz, window: int) -> np.ndarray:
    """(62, T, n_bands) float64 DE of raw EEG (62, n) uV: band-pass, then gaussian_de per window.

    T = n // window non-overlapping windows; bands (lo, hi) Hz; filter: 4th-order Butterworth,
    zero-phase (sosfiltfilt) over the whole trial. In nats of uV: the lab's de_LDS uses an
    STFT-energy variant, log2(100 * E), so the values differ in scale (not in ranking).
    """
    n_windows = raw.shape[-1] // window
    out = np.empty((raw.shape[0], n_windows, len(bands_hz)))
    for b, (lo, hi) in enumerate(bands_hz):  # one zero-phase filter per band, all electrodes at once
        sos = signal.butter(4, (lo, hi), btype="bandpass", fs=SAMPLING_RATE, output="sos")
        filtered = signal.sosfiltfilt(sos, raw, axis=-1)[:, : n_windows * window]
        variance = filtered.reshape(raw.shape[0], n_windows, window).var(axis=-1)
        out[..., b] = gaussian_de(np.maximum(variance, np.finfo(np.float64).tiny))  # a flat electrode stays finite
    return out


# ----------------------------------------------------------------------------- one session


def session_arrays(de: dict[int, np.ndarray], raw: dict[int, np.ndarray] | None, labels: np.ndarray,
                   spec: TemporalSpec, interpolation: np.ndarray, resampling: np.ndarray, width: int) -> dict[str, np.ndarray]:
    """Every array of one subject-session, from loaded trials (the path timed by bench/preprocess.py).

    de: trial -> (62, T, 5) DE; raw: trial -> (62, n) uV, or None; labels: (n_trials,) 0-based.
    Returns, keyed as ARRAYS: spectral (N, W, W, 5), temporal (N, W, W, points), de (N, 62, 5),
    eeg (N, 62, points) float32; label, trial (N,) int64. No temporal/eeg without raw.
    """
    trials = sorted(de)
    n_windows = {k: de[k].shape[1] for k in trials}
    de_samples = np.concatenate([de[k].transpose(1, 0, 2) for k in trials]).astype(np.float32)  # (N, 62, 5)
    counts = list(n_windows.values())
    out = {"spectral": electrodes_to_maps(de_samples, interpolation, width)}
    if raw is not None:
        eeg = temporal_samples(raw, n_windows, spec, resampling)
        out["temporal"] = electrodes_to_maps(eeg, interpolation, width)
    out["de"] = de_samples
    if raw is not None:
        out["eeg"] = eeg
    out["label"] = np.repeat(labels[np.array(trials) - 1], counts).astype(np.int64)
    out["trial"] = np.repeat(np.array(trials, dtype=np.int64), counts)
    return out


def _check_trials(path: Path, trials: dict, n_labels: int, family: str) -> None:
    if len(trials) != n_labels:
        raise DataError(f"{path}: {len(trials)} trials ({family}1..{family}{len(trials)}), expected {n_labels}, one per label")


def _check_lengths(rec: Recording, de: dict[int, np.ndarray], raw: dict[int, np.ndarray], spec: TemporalSpec,
                   feature: str) -> None:
    """Raw EEG must hold every window's segment, and at most one window beyond the last DE window."""
    for trial, x in de.items():
        n_windows, n = x.shape[1], raw[trial].shape[1]
        if not (n_windows - 1) * spec.window + spec.offset + spec.length <= n <= (n_windows + 1) * spec.window:
            raise DataError(f"{rec.raw}: trial {trial} (key *_eeg{trial}) has {n} samples at {SAMPLING_RATE} Hz, but "
                            f"{rec.features} key {feature}{trial} has {n_windows} windows of {spec.window} samples "
                            f"(expected about {n_windows * spec.window} samples)")


def _load_session(rec: Recording, cfg: Config, labels: np.ndarray, spec: TemporalSpec) -> tuple[dict, dict | None]:
    """(de, raw) of one recording, read and checked; de: trial -> (62, T, 5), raw: trial -> (62, n) or None."""
    raw = read_raw(rec.raw, rec.prefix) if rec.raw is not None else None
    if raw is not None:
        _check_trials(rec.raw, raw, len(labels), "*_eeg")
    if cfg.data.feature == "de_raw":
        short = next((k for k, x in raw.items() if x.shape[1] < spec.window), None)
        if short is not None:
            raise DataError(f"{rec.raw}: trial {short} (key *_eeg{short}) has {raw[short].shape[1]} samples, "
                            f"shorter than one {spec.window}-sample DE window")
        de = {k: differential_entropy(x, BANDS_HZ[cfg.data.dataset], spec.window) for k, x in raw.items()}
        return de, raw
    de = read_features(rec.features, cfg.data.feature)
    _check_trials(rec.features, de, len(labels), cfg.data.feature)
    if raw is not None:
        _check_lengths(rec, de, raw, spec, cfg.data.feature)
    return de, raw


def session_folder(cfg: Config, subject: int, session: int) -> Path:
    """<preprocessed_root>/sub01_ses1: where one subject-session's arrays and manifest live."""
    return cfg.path.preprocessed_root / f"sub{subject:02d}_ses{session}"


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_current(folder: Path, cfg: Config) -> bool:
    manifest = _read_manifest(folder)
    return (manifest is not None and manifest.get("data") == cfg.to_dict()["data"]
            and all((folder / f"{name}.npy").is_file() for name in manifest.get("arrays", {})))


def _write_session(folder: Path, arrays: dict[str, np.ndarray], manifest: dict) -> int:
    """Write the arrays, then the manifest; returns the bytes of the .npy files."""
    make_folder(folder)
    (folder / MANIFEST).unlink(missing_ok=True)  # incomplete until the new manifest lands
    remove_stale_temporaries(folder)  # left by a run killed while writing this session
    for name in ARRAYS:
        if name not in arrays:
            (folder / f"{name}.npy").unlink(missing_ok=True)  # e.g. temporal.npy of an earlier run with raw EEG
    for name, a in arrays.items():
        save_npy(folder / f"{name}.npy", a)
    n_bytes = sum((folder / f"{name}.npy").stat().st_size for name in arrays)
    write_json(folder / MANIFEST, {**manifest, "bytes": n_bytes})
    return n_bytes


def _write_index(cfg: Config) -> None:
    """<preprocessed_root>/manifest.json: the complete sessions built with this [data] config."""
    root = cfg.path.preprocessed_root
    remove_stale_temporaries(root)
    sessions = []
    for folder in sorted(root.glob("sub*_ses*")):
        if SESSION_FOLDER.match(folder.name) and _is_current(folder, cfg):
            manifest = _read_manifest(folder)
            sessions.append({key: manifest[key] for key in ("subject", "session", "n_samples", "has_temporal")}
                            | {"folder": folder.name})
    sessions.sort(key=lambda s: (s["subject"], s["session"]))
    write_json(root / MANIFEST, {"dataset": cfg.data.dataset, "data": cfg.to_dict()["data"], "sessions": sessions})


# ----------------------------------------------------------------------------- whole dataset


def _select(recordings: list[Recording], subjects, sessions, root: Path) -> list[Recording]:
    for name, wanted, have in (("subject", subjects, {r.subject for r in recordings}),
                               ("session", sessions, {r.session for r in recordings})):
        missing = sorted(set(wanted or ()) - have)
        if missing:
            raise DataError(f"{root}: no recording of {name} {missing[0]} (found {name}s {', '.join(map(str, sorted(have)))})")
    chosen = [r for r in recordings if (not subjects or r.subject in subjects) and (not sessions or r.session in sessions)]
    if not chosen:
        raise DataError(f"{root}: no recording of subjects {subjects} in sessions {sessions}")
    return chosen


def preprocess(cfg: Config, force: bool = False, subjects=None, sessions=None) -> list[Path]:
    """Write every selected subject-session (default: all) under preprocessed_root; returns their folders."""
    data, root = cfg.data, cfg.path.dataset_root
    if data.specInput_length != len(BANDS):
        raise ConfigError(f"{cfg.source}: [data] specInput_length: expected {len(BANDS)} (DE bands), got {data.specInput_length}")
    if data.input_width < 2:
        raise ConfigError(f"{cfg.source}: [data] input_width: expected at least 2, got {data.input_width}")
    spec = temporal_spec(cfg)
    check_output_folder(cfg.path.preprocessed_root, f"{cfg.source}: [path] preprocessed_root")
    recordings = _select(find_recordings(data.dataset, root), subjects, sessions, root)
    has_raw = recordings[0].raw is not None  # find_recordings pairs the folders: all or none have raw EEG
    has_features = recordings[0].features is not None
    if data.feature == "de_raw" and not has_raw:
        raise DataError(f"{root / RAW_FOLDER[data.dataset]}: not found, needed for [data] feature = de_raw (DE from raw EEG)")
    if data.feature != "de_raw" and not has_features:
        raise DataError(f"{root / FEATURE_FOLDERS[data.dataset][0]}: not found, needed for [data] feature = {data.feature} "
                        f"(feature = de_raw computes DE from {RAW_FOLDER[data.dataset]}/ instead)")
    if not has_raw:
        print(f"no raw EEG under {root / RAW_FOLDER[data.dataset]}: only the spatial-spectral stream can be trained "
              f"(set [model] streams = spectral)")
    labels = read_labels(data.dataset, root)
    interpolation, resampling = interpolation_matrix(data.input_width), resample_matrix(spec)
    code = git_commit()
    folders, skipped = [], 0
    for rec in recordings:
        folder = session_folder(cfg, rec.subject, rec.session)
        folders.append(folder)
        if not force and _is_current(folder, cfg):
            skipped += 1
            continue
        if rec.session not in labels:
            raise DataError(f"{root}: no labels for session {rec.session} (sessions {', '.join(map(str, sorted(labels)))})")
        start = time.perf_counter()
        de, raw = _load_session(rec, cfg, labels[rec.session], spec)
        arrays = session_arrays(de, raw, labels[rec.session], spec, interpolation, resampling, data.input_width)
        del de, raw
        manifest = {
            "dataset": data.dataset, "subject": rec.subject, "session": rec.session, "data": cfg.to_dict()["data"],
            "n_samples": len(arrays["label"]), "has_temporal": "temporal" in arrays,
            "arrays": {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in arrays.items()},
            "sources": {"dataset_root": str(root), "features": None if data.feature == "de_raw" else str(rec.features),
                        "raw": str(rec.raw) if rec.raw else None},
            "temporal": {"window": spec.window, "offset": spec.offset, "length": spec.length,
                         "up": spec.up, "down": spec.down, "context": spec.context},
            "code": code,
        }
        n_bytes = _write_session(folder, arrays, manifest)
        print(f"{folder.name}: {len(arrays['label'])} samples, {n_bytes / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s")
    _write_index(cfg)
    if skipped:
        print(f"{skipped} session(s) already preprocessed with this config, skipped (--force redoes them)")
    return folders


@dataclass(frozen=True, eq=False)
class Session:
    """One preprocessed subject-session; arrays are memory-mapped read-only."""

    subject: int
    session: int
    de: np.ndarray  # (N, 62, specInput_length) float32, DE per electrode and band, unnormalised
    eeg: np.ndarray | None  # (N, 62, temInput_length) float32, resampled raw segment, uV; None without raw EEG
    label: np.ndarray  # (N,) int64, 0-based class (datasets.CLASS_NAMES)
    trial: np.ndarray  # (N,) int64, 1-based trial number
    path: Path  # the session folder (spectral.npy, temporal.npy, manifest.json)


def load_preprocessed(cfg: Config, subjects=None, sessions=None) -> list[Session]:
    """The preprocessed sessions (default: all on disk), sorted by (subject, session).

    DataError, naming the Preprocess.py command to run, if a requested one is missing or was built
    with a different [data] config.
    """
    root = cfg.path.preprocessed_root
    command = f"python Preprocess.py -c {cfg.source or '<ini file>'}"
    on_disk = {}
    for folder in root.glob("sub*_ses*") if root.is_dir() else ():
        match = SESSION_FOLDER.match(folder.name)
        if match and (folder / MANIFEST).is_file():
            on_disk[int(match.group(1)), int(match.group(2))] = folder
    subjects = subjects or sorted({s for s, _ in on_disk})
    if not subjects:
        raise DataError(f"{root}: no preprocessed sessions; run `{command}`")
    out = []
    for subject in subjects:
        wanted = sessions or sorted(k for s, k in on_disk if s == subject)
        if not wanted:
            raise DataError(f"{root}: subject {subject} not preprocessed; run `{command} --subjects {subject}`")
        for session in wanted:
            if (subject, session) not in on_disk:
                raise DataError(f"{root}: sub{subject:02d}_ses{session} not preprocessed; "
                                f"run `{command} --subjects {subject} --sessions {session}`")
            out.append(_open_session(on_disk[subject, session], cfg, command))
    return out


def _open_session(folder: Path, cfg: Config, command: str) -> Session:
    manifest = _read_manifest(folder)
    if manifest is None:
        raise DataError(f"{folder / MANIFEST}: unreadable; run `{command} --force`")
    expected = cfg.to_dict()["data"]
    changed = [k for k in expected if manifest.get("data", {}).get(k) != expected[k]]
    if changed:
        k = changed[0]
        raise DataError(f"{folder}: preprocessed with [data] {k} = {manifest.get('data', {}).get(k)!r}, but "
                        f"{cfg.source} has {expected[k]!r}; rerun `{command} --force`")
    arrays = {}
    for name, meta in manifest["arrays"].items():
        path = folder / f"{name}.npy"
        try:
            arrays[name] = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: unreadable ({e}); rerun `{command} --force`") from None
        if list(arrays[name].shape) != meta["shape"] or str(arrays[name].dtype) != meta["dtype"]:
            raise DataError(f"{path}: shape {arrays[name].shape} {arrays[name].dtype}, manifest says "
                            f"{tuple(meta['shape'])} {meta['dtype']}; rerun `{command} --force`")
    return Session(subject=manifest["subject"], session=manifest["session"], de=arrays["de"], eeg=arrays.get("eeg"),
                   label=arrays["label"], trial=arrays["trial"], path=folder)


# ----------------------------------------------------------------------------- command line



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the spatial-spectral and spatial-temporal maps (see the top of Preprocess.py).")
    parser.add_argument("-c", "--config", default="SEED.ini", help="INI file (default SEED.ini; SEED_IV.ini for SEED-IV)")
    parser.add_argument("--force", action="store_true", help="redo sessions that are already preprocessed")
    parser.add_argument("--subjects", type=int_list, help="comma-separated subject numbers, e.g. 1,2 (default: all)")
    parser.add_argument("--sessions", type=int_list, help="comma-separated session numbers, e.g. 1 (default: all)")
    args = parser.parse_args(argv)
    preprocess(load_config(args.config), force=args.force, subjects=args.subjects, sessions=args.sessions)
    return 0


if __name__ == "__main__":
    cli_main(main)
