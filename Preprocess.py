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

    python Preprocess.py -c SEED.ini --no-maps              # only what run.py reads (25 MB, not 442 MB, a session)

The interpolation (bicubic spline on the 9x9 grid, one (W*W, 62) matrix), the resampling of the
raw segments and the normalisation live in inputs.py, which run.py and figures.py call too.
Checked before anything is written: the memory one session needs (a config that cannot fit is
refused, naming [data] input_width), and that what is written is finite (resampling and
interpolation can overshoot values near float32's limit); values that float32 flushes to zero get a
warning line naming the file.

Output, per subject-session, under [path] preprocessed_root:
    sub01_ses1/spectral.npy   (N, W, W, 5) float32    DE maps
               temporal.npy   (N, W, W, P) float32    raw EEG maps, uV (without raw EEG: absent)
               de.npy         (N, 62, 5) float32      the same DE per electrode, unnormalised
               eeg.npy        (N, 62, P) float32      the same resampled segments per electrode
               label.npy      (N,) int64              0-based class (the dataset entry's class_names)
               trial.npy      (N,) int64              1-based trial number
               manifest.json  [data] config, shapes, dtypes, sources, bytes; written last: its
                              presence marks the session complete
    manifest.json             the complete sessions that match the config
run.py reads de, eeg, label and trial only: it z-scores de/eeg per electrode with training-split
statistics and maps each batch through inputs.interpolation_matrix, which gives the stored maps
(electrodes_to_maps(de) == spectral). spectral/temporal are the stacked 3D maps the paper describes,
written for inspection and other tools; --no-maps leaves them out.
Every file is written atomically; a rerun skips complete sessions built with the same [data]
config (others are rebuilt) unless --force.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from sst.cli import cli_main, int_list, refuse_empty_values
from sst.config import Config, add_set_argument, data_override_root, load_config
from sst.data import datasets
from sst.data.electrodes import BANDS, CHANNELS, GRID_SIZE, SAMPLING_RATE
from sst.data.inputs import (
    TemporalSpec,
    electrodes_to_maps,
    interpolation_matrix,
    resample_matrix,
    save_maps_npy,
    temporal_samples,
    temporal_spec,
)
from sst.data.readers import Recording, find_recordings, read_features, read_labels, read_raw

# Session and load_preprocessed stay importable from here (Preprocess.load_preprocessed, as earlier versions)
from sst.data.session_store import (
    ARRAYS,
    MANIFEST,
    SESSION_FOLDER,
    manifest_matches_folder,
    read_manifest,
    session_folder,
)
from sst.errors import ConfigError, DataError
from sst.fileio import (
    BLOCK,
    check_output_folder,
    make_folder,
    publish,
    remove_stale_temporaries,
    staged_path,
    write_json,
)
from sst.runtime import git_commit

# ----------------------------------------------------------------------------- DE from raw EEG


def gaussian_de(variance: np.ndarray) -> np.ndarray:
    """Differential entropy in nats of a Gaussian with this variance: 0.5 * ln(2*pi*e*variance)."""
    return 0.5 * np.log(2 * np.pi * np.e * variance)


def differential_entropy(raw: np.ndarray, bands_hz, window: int) -> np.ndarray:
    """(62, T, n_bands) float64 DE of raw EEG (62, n) uV: band-pass, then gaussian_de per window.

    T = n // window non-overlapping windows; bands (lo, hi) Hz; filter: 4th-order Butterworth,
    zero-phase (sosfiltfilt) over the whole trial. In nats of uV: the lab's de_LDS uses an
    STFT-energy variant, log2(100 * E), so the values differ in scale (not in ranking).
    """
    from scipy import signal  # seconds to import: only feature = de_raw needs it

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
                   spec: TemporalSpec, interpolation: np.ndarray, resampling: np.ndarray, width: int,
                   maps: bool = True) -> dict[str, np.ndarray]:
    """Every array of one subject-session, from loaded trials (the path timed by bench/preprocess.py).

    de: trial -> (62, T, 5) DE; raw: trial -> (62, n) uV, or None; labels: (n_trials,) 0-based.
    Returns, keyed as ARRAYS: spectral (N, W, W, 5), temporal (N, W, W, points), de (N, 62, 5),
    eeg (N, 62, points) float32; label, trial (N,) int64. No temporal/eeg without raw; no
    spectral/temporal maps with maps=False (run.py builds them per batch from de and eeg).
    """
    trials = sorted(de)
    n_windows = {k: de[k].shape[1] for k in trials}
    de_samples = np.concatenate([de[k].transpose(1, 0, 2) for k in trials]).astype(np.float32)  # (N, 62, 5)
    counts = list(n_windows.values())
    out = {"spectral": electrodes_to_maps(de_samples, interpolation, width)} if maps else {}
    if raw is not None:
        eeg = temporal_samples(raw, n_windows, spec, resampling)
        if maps:
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
        de = {k: differential_entropy(x, datasets.get(cfg.data.dataset).bands_hz, spec.window) for k, x in raw.items()}
        return de, raw
    de = read_features(rec.features, cfg.data.feature)
    _check_trials(rec.features, de, len(labels), cfg.data.feature)
    if raw is not None:
        _check_lengths(rec, de, raw, spec, cfg.data.feature)
    return de, raw


def _is_current(folder: Path, cfg: Config, maps: bool = False) -> bool:
    """Complete, built with cfg's [data] section, its manifest about this folder, and with maps if asked."""
    manifest = read_manifest(folder)
    return (manifest is not None and manifest.get("data") == cfg.to_dict()["data"]
            and manifest_matches_folder(folder, manifest)
            and (not maps or "spectral" in manifest.get("arrays", {}))
            and all((folder / f"{name}.npy").is_file() for name in manifest.get("arrays", {})))


def _write_session(folder: Path, arrays: dict[str, np.ndarray], manifest: dict,
                   maps: dict[str, np.ndarray], interpolation: np.ndarray, width: int) -> int:
    """Write a session's arrays and maps (`maps`: {name: electrode values}, streamed through
    inputs.save_maps_npy) beside the files they replace, then swap them in and write the manifest;
    returns the bytes of the .npy files.

    Until every new file is complete (fsynced), the old session stays as it was, complete and
    usable: a failure (disk full, a bad input, a kill) loses nothing finished. Only the swap itself,
    renames taking a few milliseconds, leaves the session without a manifest if killed there, and so
    marked for rebuilding.
    """
    make_folder(folder)
    remove_stale_temporaries(folder)  # left by a run killed while writing this session
    staged: dict[str, Path] = {}
    try:
        for name, values in maps.items():
            with staged_path(folder / f"{name}.npy") as tmp, open(tmp, "wb") as fh:
                save_maps_npy(fh, values, interpolation, width)
            staged[name] = tmp
        for name, a in arrays.items():
            with staged_path(folder / f"{name}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, a)
            staged[name] = tmp
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    n_bytes = sum(tmp.stat().st_size for tmp in staged.values())
    (folder / MANIFEST).unlink(missing_ok=True)     # the swap: incomplete until the new manifest lands
    for name in ARRAYS:
        if name not in staged:
            (folder / f"{name}.npy").unlink(missing_ok=True)  # e.g. temporal.npy of an earlier run with raw EEG
    for name, tmp in staged.items():
        publish(tmp, folder / f"{name}.npy")
    write_json(folder / MANIFEST, {**manifest, "bytes": n_bytes})
    return n_bytes


def _write_index(cfg: Config) -> None:
    """<preprocessed_root>/manifest.json: the complete sessions built with this [data] config."""
    root = cfg.path.preprocessed_root
    remove_stale_temporaries(root)
    sessions = []
    for folder in sorted(root.glob("sub*_ses*")):
        manifest = read_manifest(folder) if SESSION_FOLDER.match(folder.name) else None
        if manifest is not None and not manifest_matches_folder(folder, manifest):
            raise DataError(f"{folder / MANIFEST}: says subject {manifest.get('subject')}, session "
                            f"{manifest.get('session')}, but its folder is {folder.name}; rerun Preprocess.py "
                            f"--force for that subject and session, or remove the folder")
        if manifest is not None and _is_current(folder, cfg):
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


def _available_memory() -> int | None:
    """Bytes the kernel says a new allocation can have (MemAvailable), None where it does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def estimated_bytes(cfg: Config, maps: bool = True) -> int:
    """Peak memory of preprocessing the largest session of cfg's dataset, estimated before any is read.

    The interpolation matrices (81 grid columns of W*W float64, held twice while they are stacked, the
    62-column float64 matrix and its float32 copy), one session's raw EEG in float64 (62 x 200 Hz x
    its seconds), its float32 and float64 electrode-level arrays and, with maps, the two buffers of 64
    samples' maps they are streamed through (inputs.save_maps_npy: the maps are never held whole).
    """
    data = cfg.data
    entry = datasets.get(data.dataset)
    windows = max(sum(t) for t in entry.trial_windows.values())
    width2, points = data.input_width ** 2, data.temInput_length
    matrices = width2 * (2 * GRID_SIZE ** 2 * 8 + len(CHANNELS) * (8 + 4))
    raw = len(CHANNELS) * SAMPLING_RATE * entry.window_s * windows * 8
    arrays = windows * len(CHANNELS) * (len(BANDS) + points) * (4 + 8)
    buffer = 2 * (64 * width2 * max(len(BANDS), points) * 4 + BLOCK) if maps else 0
    return matrices + raw + arrays + buffer


def _check_memory(cfg: Config, maps: bool) -> None:
    need, have = estimated_bytes(cfg, maps), _available_memory()
    if have is not None and need > have:
        raise ConfigError(f"{cfg.origin('data', 'input_width', 'temInput_length')}: [data] input_width = "
                          f"{cfg.data.input_width} (with temInput_length = {cfg.data.temInput_length}): "
                          f"preprocessing one {cfg.data.dataset} session needs about "
                          f"{need / 2**30:,.1f} GiB of memory, {have / 2**30:,.1f} GiB are available")


def _check_values(rec: Recording, de: dict[int, np.ndarray], raw: dict | None, arrays: dict[str, np.ndarray],
                  feature: str, maps: dict[str, np.ndarray], interpolation: np.ndarray, width: int) -> None:
    """What is written must hold what was read: no non-finite values made by resampling or interpolation
    (an error), no values silently lost to float32 (a warning: tiny values become 0 or lose digits).

    arrays: the electrode-level arrays; maps: {map name: the electrode values it is made of}. Maps of
    values below float32's limit / the interpolation's largest absolute row sum are finite without
    being built; others are built here and looked at.
    """
    source = rec.raw if feature == "de_raw" else rec.features
    limit = float(np.finfo(np.float32).max)
    gain = float(np.abs(interpolation).sum(axis=1).max())
    causes = {"de": "float32 conversion", "eeg": "the resampling filter", "spectral": "the interpolation",
              "temporal": "the interpolation"}
    for name in ("de", "eeg", "spectral", "temporal"):     # the earliest step that fails names the cause
        if name in maps and float(np.abs(maps[name]).max()) * gain < limit / 2:
            continue
        if name in maps:
            with np.errstate(over="ignore", invalid="ignore"):
                a = electrodes_to_maps(maps[name], interpolation, width)
        else:
            a = arrays.get(name)
        if a is not None and not np.isfinite(a).all():
            origin = rec.raw if name in ("temporal", "eeg") else source
            raise DataError(f"{origin}: {np.count_nonzero(~np.isfinite(a))} values of the written {name} array are "
                            f"not finite ({causes[name]} overshoots inputs near float32's limit, "
                            f"{limit:.3g}); expected values of EEG magnitude")
    # the inputs are looked at, not the written arrays: resampling or interpolation that pushes a value
    # below float32's smallest normal is not reported (it would take a pass over 442 MB of maps)
    tiny = np.finfo(np.float32).tiny
    for path, family, trials in ((source, feature, de), (rec.raw, "*_eeg", raw or {})):
        lost = sum(np.count_nonzero((x != 0) & (np.abs(x) < tiny)) for x in trials.values())
        if lost:
            print(f"warning: {path}: {lost} values of {family} are below float32's smallest normal number "
                  f"({tiny:.3g}): written as 0 or with fewer digits", file=sys.stderr)


def preprocess(cfg: Config, force: bool = False, subjects=None, sessions=None, maps: bool = True) -> list[Path]:
    """Write every selected subject-session (default: all) under preprocessed_root; returns their folders.

    maps=False (--no-maps) writes only what run.py reads: de, eeg, label, trial (about 25 MB a SEED
    session instead of 442 MB); a session written so is rebuilt when maps are asked for later.
    """
    data, root = cfg.data, cfg.path.dataset_root
    if data.specInput_length != len(BANDS):
        raise ConfigError(f"{cfg.where('data', 'specInput_length')}: expected {len(BANDS)} (DE bands), "
                          f"got {data.specInput_length}")
    if data.input_width < 2:
        raise ConfigError(f"{cfg.where('data', 'input_width')}: expected at least 2, got {data.input_width}")
    spec = temporal_spec(cfg)
    _check_memory(cfg, maps)
    check_output_folder(cfg.path.preprocessed_root, cfg.where("path", "preprocessed_root"))
    recordings = _select(find_recordings(data.dataset, root), subjects, sessions, root)
    has_raw = recordings[0].raw is not None  # find_recordings pairs the folders: all or none have raw EEG
    has_features = recordings[0].features is not None
    entry = datasets.get(data.dataset)
    if data.feature == "de_raw" and not has_raw:
        raise DataError(f"{root / entry.raw_folder}: not found, needed for [data] feature = de_raw (DE from raw EEG)")
    if data.feature != "de_raw" and not has_features:
        raise DataError(f"{root / entry.feature_folders[0]}: not found, needed for [data] feature = {data.feature} "
                        f"(feature = de_raw computes DE from {entry.raw_folder}/ instead)")
    if not has_raw:
        print(f"no raw EEG under {root / entry.raw_folder}: only the spatial-spectral stream can be trained "
              f"(set [model] streams = spectral)")
    labels = read_labels(data.dataset, root)
    interpolation, resampling = interpolation_matrix(data.input_width), resample_matrix(spec)
    code = git_commit()
    folders, skipped = [], 0
    for rec in recordings:
        folder = session_folder(cfg, rec.subject, rec.session)
        folders.append(folder)
        if not force and _is_current(folder, cfg, maps):
            remove_stale_temporaries(folder)    # what a --force killed while staging left beside it
            skipped += 1
            continue
        if rec.session not in labels:
            raise DataError(f"{root}: no labels for session {rec.session} (sessions {', '.join(map(str, sorted(labels)))})")
        start = time.perf_counter()
        de, raw = _load_session(rec, cfg, labels[rec.session], spec)
        with np.errstate(over="ignore", invalid="ignore"):     # overflow is what _check_values reports
            arrays = session_arrays(de, raw, labels[rec.session], spec, interpolation, resampling, data.input_width,
                                    maps=False)
        # the maps are streamed into their files (inputs.save_maps_npy), not held: 442 MB a SEED session
        to_map = {m: arrays[e] for m, e in (("spectral", "de"), ("temporal", "eeg")) if maps and e in arrays}
        _check_values(rec, de, raw, arrays, data.feature, to_map, interpolation, data.input_width)
        del de, raw
        shapes = {name: a.shape for name, a in arrays.items()}
        shapes |= {m: (len(v), data.input_width, data.input_width, v.shape[2]) for m, v in to_map.items()}
        manifest = {
            "dataset": data.dataset, "subject": rec.subject, "session": rec.session, "data": cfg.to_dict()["data"],
            "n_samples": len(arrays["label"]), "has_temporal": "eeg" in arrays,
            "arrays": {name: {"shape": list(shapes[name]), "dtype": "float32" if name in to_map else str(arrays[name].dtype)}
                       for name in ARRAYS if name in shapes},
            "sources": {"dataset_root": str(root), "features": None if data.feature == "de_raw" else str(rec.features),
                        "raw": str(rec.raw) if rec.raw else None},
            "temporal": {"window": spec.window, "offset": spec.offset, "length": spec.length,
                         "up": spec.up, "down": spec.down, "context": spec.context},
            "code": code,
        }
        n_bytes = _write_session(folder, arrays, manifest, to_map, interpolation, data.input_width)
        print(f"{folder.name}: {len(arrays['label'])} samples, {n_bytes / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s")
    _write_index(cfg)
    if skipped:
        print(f"{skipped} session(s) already preprocessed with this config, skipped (--force redoes them)")
    return folders


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the spatial-spectral and spatial-temporal maps (see the top of Preprocess.py).")
    parser.add_argument("-c", "--config", default="SEED.ini", help="INI file (default SEED.ini; SEED_IV.ini for SEED-IV)")
    add_set_argument(parser)
    parser.add_argument("--force", action="store_true", help="redo sessions that are already preprocessed")
    parser.add_argument("--subjects", type=int_list, help="comma-separated subject numbers, e.g. 1,2 (default: all)")
    parser.add_argument("--sessions", type=int_list, help="comma-separated session numbers, e.g. 1 (default: all)")
    parser.add_argument("--no-maps", action="store_true",
                        help="write only the electrode-level arrays run.py trains from (de, eeg, label, trial: "
                             "about 25 MB a SEED session instead of 442 MB), not the stacked 3D maps")
    args = refuse_empty_values(parser).parse_args(argv)
    cfg = data_override_root(load_config(args.config, args.set))
    if cfg.overrides:
        print(f"overrides: {' '.join(cfg.overrides)}; sessions under {cfg.path.preprocessed_root}")
    preprocess(cfg, force=args.force, subjects=args.subjects, sessions=args.sessions, maps=not args.no_maps)
    return 0


if __name__ == "__main__":
    cli_main(main)
