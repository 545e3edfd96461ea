"""Synthetic SEED and SEED-IV in exactly the distributed on-disk format, with a planted class signal.

    python -m sst.data.synthetic --dataset SEED --out data/SEED --subjects 1,2 --sessions 1 --trial-fraction 0.1
    python -m sst.data.synthetic --dataset SEED-IV --out data/SEED_IV      # full size: 45 sessions, several GB

or from Python: `write_seed(root, subjects=(1, 2), sessions=(1,), trial_fraction=0.1)`, `write_seed_iv(...)`.

What is written is what the lab ships (see sst/data/datasets.py): the folder tree, file names with the real
session dates, keys in the real order (all 12 feature families for SEED, 4 for SEED-IV), float64
arrays of the real shapes, written by scipy.io.savemat (so only __header__, __version__ and
__globals__ appear besides them), label.mat and readme.txt in SEED's folders, ReadMe.txt with the
`sessionK_label = [...]` lines for SEED-IV. Trial lengths are the real ones times `trial_fraction`
(at least MIN_WINDOWS windows). Not written: Channel Order.xlsx and the eye-tracking folders
(nothing here reads them).

Signal model, per trial (electrodes in electrodes.CHANNELS order):
  raw EEG = Gaussian noise coloured in the frequency domain: a 1/f-like background band-limited to
  0.5-75 Hz (the lab's band-pass), times per-electrode, per-band power gains in log2 units,
        subject baseline (electrode gains, alpha over posterior electrodes)
      + class signature * subject scale   (e.g. SEED positive: beta and gamma over temporal electrodes)
      + session offset + trial nuisance   (trials of one class differ; the nuisance is what keeps
                                           accuracy below 100%)
  scaled to about 20 uV.
  DE features = log2(100 * E) of that raw EEG, E = band energy of a Hann-windowed FFT of each DE
  window (1 s SEED, 4 s SEED-IV), the variant the lab's values (10 to 28, delta highest) suggest;
  then smoothed over windows: movingAve = 5-window moving average, LDS = Gaussian smoothing
  (sigma 2 windows), a stand-in for the lab's Kalman smoother. psd = 100 * E; dasm/rasm = DE
  difference/ratio of the 27 left-right electrode pairs, asm = both (54 rows), dcau = DE difference
  of the 23 front-back pairs.
So a class moves DE by its signature (log2 power units) and the 200-ms raw segments carry the same
band power differences. With the defaults, a nearest-class-mean classifier on z-scored de_LDS,
trained on the first trials of a session and tested on the others (the entry's n_train_trials),
scores about 0.9 on SEED and 0.8 on SEED-IV; on the log spectra of the single 200-ms segments
about 0.8 and 0.65 (chance 0.33 and 0.25; tests/data/test_synthetic.py checks this). Output is deterministic given `seed`, per subject-session (writing
subjects (1, 2) or (2,) gives subject 2 the same data).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

import numpy as np
import scipy.io
from scipy import fft, ndimage

from sst.cli import cli_main, int_list, refuse_empty_values
from sst.data import datasets
from sst.data.datasets import SMOOTHINGS
from sst.data.electrodes import BANDS, CHANNELS, GRID_POSITIONS, GRID_SIZE, SAMPLING_RATE
from sst.fileio import atomic_path

MIN_WINDOWS = 3  # DE windows per trial at the smallest trial_fraction
RAW_STD_UV = 20.0  # typical raw EEG amplitude (the real data: tens of uV)
SIGNAL = 1.5  # scales every class signature below
TRIAL_NUISANCE = 0.45  # std of a trial's random power offset per region and band (log2 units)

_rows, _cols = GRID_POSITIONS[:, 0], GRID_POSITIONS[:, 1]
REGIONS = {  # electrode masks from the 9x9 grid
    "frontal": _rows <= 2,
    "temporal": ((_cols <= 1) | (_cols >= GRID_SIZE - 2)) & (_rows >= 3) & (_rows <= 6),
    "central": (_cols >= 2) & (_cols <= GRID_SIZE - 3) & (_rows >= 3) & (_rows <= 5),
    "posterior": _rows >= 6,
}
# class -> (region, band, log2 power change); one table drives both the raw EEG and the DE features
CLASS_SIGNATURES = {
    "SEED": {
        "negative": (("posterior", "alpha", 1.0), ("frontal", "delta", 0.6)),
        "neutral": (("central", "theta", 0.6), ("frontal", "alpha", 0.6)),
        "positive": (("temporal", "beta", 1.0), ("temporal", "gamma", 1.0)),
    },
    "SEED-IV": {
        "neutral": (("posterior", "alpha", 1.0),),
        "sad": (("frontal", "theta", 1.0), ("posterior", "alpha", -0.5)),
        "fear": (("frontal", "beta", 0.8), ("central", "gamma", 0.8)),
        "happy": (("temporal", "gamma", 1.0), ("temporal", "beta", 0.7)),
    },
}


def _pairs(partner) -> np.ndarray:
    """(n, 2) electrode indices (a, partner(a)) for every electrode whose partner cell holds one."""
    at = {tuple(p): i for i, p in enumerate(GRID_POSITIONS.tolist())}
    return np.array([(i, at[partner(r, c)]) for i, (r, c) in enumerate(GRID_POSITIONS.tolist()) if partner(r, c) in at])


LEFT_RIGHT = _pairs(lambda r, c: (r, GRID_SIZE - 1 - c) if c < GRID_SIZE // 2 else None)  # 27 pairs (dasm, rasm)
FRONT_BACK = _pairs(lambda r, c: (GRID_SIZE - 1 - r, c) if r < GRID_SIZE // 2 else None)  # 23 pairs (dcau)


def _signature(dataset: str) -> np.ndarray:
    """(n_classes, 62, 5) float64 log2 power change per class, electrode and band."""
    names = datasets.get(dataset).class_names
    out = np.zeros((len(names), len(CHANNELS), len(BANDS)))
    for c, name in enumerate(names):
        for region, band, change in CLASS_SIGNATURES[dataset][name]:
            out[c, REGIONS[region], BANDS.index(band)] += SIGNAL * change
    return out


def _band_weights(dataset: str, freqs: np.ndarray) -> np.ndarray:
    """(5, F) float64: 1 where a frequency lies in a DE band, else 0."""
    return np.array([(freqs >= lo) & (freqs <= hi) for lo, hi in datasets.get(dataset).bands_hz], dtype=np.float64)


def _colored_noise(rng: np.random.Generator, gains: np.ndarray, n: int, dataset: str) -> np.ndarray:
    """(62, n) float64 raw EEG in uV: noise whose band power per electrode is 2**gains (62, 5) times the background."""
    n_fft = fft.next_fast_len(n, real=True)
    freqs = fft.rfftfreq(n_fft, 1 / SAMPLING_RATE)
    background = (freqs >= 0.5) * (freqs <= 75) / (1 + freqs / 2.0) ** 2  # 1/f^2 above 2 Hz, lab's 0-75 Hz band-pass
    amplitude = np.sqrt(background * 2.0 ** (gains @ _band_weights(dataset, freqs)))  # (62, F)
    spectrum = (rng.standard_normal(amplitude.shape) + 1j * rng.standard_normal(amplitude.shape)) * amplitude
    # irfft's 1/n_fft scaling gives var = 2 * sum(|A|^2) / n_fft^2 for gains = 0: rescale that to RAW_STD_UV
    scale = RAW_STD_UV * n_fft / np.sqrt(2 * background.sum())
    return fft.irfft(spectrum, n_fft, axis=-1)[:, :n] * scale


def _stft_de(raw: np.ndarray, window: int, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Per DE window: (de, psd), each (62, T, 5) float64; psd = 100 * E, E = Hann-FFT band energy, de = log2(psd)."""
    n_windows = raw.shape[1] // window
    frames = raw[:, : n_windows * window].reshape(len(CHANNELS), n_windows, window) * np.hanning(window)
    power = np.abs(fft.rfft(frames, axis=-1)) ** 2 / window  # (62, T, F)
    energy = power @ _band_weights(dataset, fft.rfftfreq(window, 1 / SAMPLING_RATE)).T  # (62, T, 5)
    return np.log2(100 * energy), 100 * energy  # the lab's scale: de_LDS between 10 and 28


def _smooth(x: np.ndarray, smoothing: str) -> np.ndarray:
    """Smoothing over windows (axis 1) of (rows, T, 5) features, as named in the lab's keys."""
    if smoothing == "movingAve":
        return ndimage.uniform_filter1d(x, 5, axis=1, mode="nearest")
    return ndimage.gaussian_filter1d(x, 2.0, axis=1, mode="nearest")  # LDS stand-in


def _feature_arrays(de: np.ndarray, psd: np.ndarray, smoothing: str) -> dict[str, np.ndarray]:
    """family -> (rows, T, 5) float64 for one smoothing, families as in the SEED entry's feature_families."""
    de, psd = _smooth(de, smoothing), _smooth(psd, smoothing)
    left, right = de[LEFT_RIGHT[:, 0]], de[LEFT_RIGHT[:, 1]]
    dasm, rasm = left - right, left / right
    return {"de": de, "psd": psd, "dasm": dasm, "rasm": rasm, "asm": np.concatenate([dasm, rasm]),
            "dcau": de[FRONT_BACK[:, 0]] - de[FRONT_BACK[:, 1]]}


def session_data(dataset: str, subject: int, session: int, trial_fraction: float = 1.0,
                 seed: int = 0) -> tuple[dict[int, np.ndarray], dict[str, np.ndarray]]:
    """One subject-session in memory: (raw, features).

    raw: trial -> (62, N) float64 uV at 200 Hz (SEED N = 200*T + 1; SEED-IV N = 800*W + 1 + up to 199).
    features: key -> array, every key of the feature file in the real order (e.g. 'de_LDS3': (62, T, 5)).
    """
    entry = datasets.get(dataset)
    windows = [max(MIN_WINDOWS, round(t * trial_fraction)) for t in entry.trial_windows[session]]
    labels = entry.trial_labels[session]
    window = entry.window_s * SAMPLING_RATE
    signature = _signature(dataset)
    dataset_id = list(datasets.DATASETS).index(dataset)
    subject_rng = np.random.default_rng([seed, dataset_id, subject])  # the same person in every session
    baseline = (subject_rng.normal(0, 0.3, (len(CHANNELS), 1)) + subject_rng.normal(0, 0.3, (1, len(BANDS)))
                + subject_rng.normal(0, 0.2, (len(CHANNELS), len(BANDS))))
    baseline[REGIONS["posterior"], BANDS.index("alpha")] += 1.5  # the posterior alpha rhythm
    strength = subject_rng.uniform(0.6, 1.4)  # how strongly this subject expresses the classes
    rng = np.random.default_rng([seed, dataset_id, subject, session])
    baseline = baseline + rng.normal(0, 0.2, baseline.shape)  # cap placement differs per session
    region_of = np.array([[REGIONS[r][e] for r in REGIONS] for e in range(len(CHANNELS))], dtype=np.float64)  # (62, 4)

    raw, features = {}, {}
    for trial, (n_windows, label) in enumerate(zip(windows, labels), start=1):
        nuisance = region_of @ rng.normal(0, TRIAL_NUISANCE, (len(REGIONS), len(BANDS))) \
            + rng.normal(0, TRIAL_NUISANCE / 2, baseline.shape)
        extra = 1 + (int(rng.integers(0, entry.raw_slack + 1)) if entry.raw_slack else 0)   # SEED-IV's lengths vary
        raw[trial] = _colored_noise(rng, baseline + strength * signature[label] + nuisance, n_windows * window + extra, dataset)
        de, psd = _stft_de(raw[trial], window, dataset)
        by_smoothing = {s: _feature_arrays(de, psd, s) for s in SMOOTHINGS}
        for family in entry.feature_families:
            for smoothing in SMOOTHINGS:
                features[f"{family}_{smoothing}{trial}"] = by_smoothing[smoothing][family]
    return raw, features


def _savemat(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        scipy.io.savemat(fh, arrays, format="5", do_compression=False)


def _write(dataset: str, root: str | Path, subjects: Iterable[int], sessions: Iterable[int], trial_fraction: float,
           seed: int, features: bool, raw: bool) -> Path:
    root = Path(root)
    if not 0 < trial_fraction <= 1:
        raise ValueError(f"{trial_fraction=} must be in (0, 1]")
    if not (features or raw):
        raise ValueError("nothing to write: features and raw are both False")
    subjects, sessions = sorted(set(subjects)), sorted(set(sessions))
    entry = datasets.get(dataset)
    unknown = [s for s in subjects if s not in entry.subjects] + [s for s in sessions if s not in entry.sessions]
    if unknown:
        raise ValueError(f"unknown subject or session {unknown[0]} for {dataset}")
    features_dir, raw_dir = root / entry.feature_folders[0], root / entry.raw_folder
    for subject in subjects:
        prefix, dates = entry.subjects[subject]
        for session in sessions:
            name = f"{subject}_{dates[session - 1]}.mat"
            folder = str(session) if entry.session_folders else ""
            eeg, feature_arrays = session_data(dataset, subject, session, trial_fraction, seed)
            if features:
                _savemat(features_dir / folder / name, feature_arrays)
            if raw:
                _savemat(raw_dir / folder / name, {f"{prefix}_eeg{k}": x for k, x in eeg.items()})
    note = f"Synthetic {dataset} written by sst.data.synthetic (seed {seed}, trial_fraction {trial_fraction}); " \
           f"not real EEG.\n"
    if entry.label_file == "label.mat":
        for folder in [d for d, written in ((features_dir, features), (raw_dir, raw)) if written]:
            _savemat(folder / "label.mat", {"label": np.array([entry.label_values], dtype=np.int32)})
            (folder / "readme.txt").write_text(note + "label.mat: 1 positive, 0 neutral, -1 negative per trial.\n")
    else:
        lines = [f"session{s}_label = [{','.join(map(str, entry.trial_labels[s]))}];" for s in entry.sessions]
        classes = ", ".join(f"{k}: {name}" for k, name in enumerate(entry.class_names))
        (root / entry.label_file).write_text(note + "The labels of the three sessions for the same subjects are as "
                                             "follows,\n" + classes + "\n" + "\n".join(lines) + "\n")
    return root


def write_seed(root: str | Path, subjects: Iterable[int] = tuple(range(1, 16)), sessions: Iterable[int] = (1, 2, 3),
               trial_fraction: float = 1.0, seed: int = 0, features: bool = True, raw: bool = True) -> Path:
    """Write synthetic SEED under `root` (ExtractedFeatures/, Preprocessed_EEG/); returns root."""
    return _write("SEED", root, subjects, sessions, trial_fraction, seed, features, raw)


def write_seed_iv(root: str | Path, subjects: Iterable[int] = tuple(range(1, 16)), sessions: Iterable[int] = (1, 2, 3),
                  trial_fraction: float = 1.0, seed: int = 0, features: bool = True, raw: bool = True) -> Path:
    """Write synthetic SEED-IV under `root` (eeg_feature_smooth/<s>/, eeg_raw_data/<s>/, ReadMe.txt); returns root."""
    return _write("SEED-IV", root, subjects, sessions, trial_fraction, seed, features, raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic SEED / SEED-IV in the real on-disk format.")
    parser.add_argument("--dataset", choices=tuple(datasets.DATASETS), required=True)
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write (e.g. data/SEED)")
    parser.add_argument("--subjects", type=int_list, default=list(range(1, 16)), help="e.g. 1,2 (default: all 15)")
    parser.add_argument("--sessions", type=int_list, default=[1, 2, 3], help="e.g. 1 (default: 1,2,3)")
    parser.add_argument("--trial-fraction", type=float, default=1.0, help="fraction of the real trial lengths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-raw", action="store_true", help="write only the DE features")
    parser.add_argument("--no-features", action="store_true", help="write only the raw EEG")
    args = refuse_empty_values(parser).parse_args(argv)
    try:
        root = _write(args.dataset, args.out, args.subjects, args.sessions, args.trial_fraction, args.seed,
                      features=not args.no_features, raw=not args.no_raw)
    except ValueError as e:
        parser.error(str(e))
    print(f"wrote synthetic {args.dataset} ({len(args.subjects)} subjects x {len(args.sessions)} sessions) under {root}")
    return 0


if __name__ == "__main__":
    cli_main(main)
