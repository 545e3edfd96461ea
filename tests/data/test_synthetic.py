"""sst/data/synthetic.py: synthetic data in the exact distributed layout, deterministic, learnable but not trivially."""
from conftest import ROOT

FRACTION = 0.02


def windows(dataset, session, fraction=FRACTION):
    """DE windows per trial of a synthetic session written at `fraction` of the real lengths."""
    return [max(synthetic.MIN_WINDOWS, round(t * fraction)) for t in datasets.get(dataset).trial_windows[session]]

import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from scipy import fft

from sst.data import datasets, electrodes, synthetic


def test_synthetic_seed_layout(seed_tree):
    name = "2_20140404.mat"  # subject 2, session 1
    t = windows("SEED", 1)
    features = scipy.io.loadmat(seed_tree / "ExtractedFeatures" / name)
    rows = {"de": 62, "psd": 62, "dasm": 27, "rasm": 27, "asm": 54, "dcau": 23}
    expected = [(f"{family}_{smoothing}{i}", (n, t[i - 1], 5)) for i in range(1, 16) for family, n in rows.items()
                for smoothing in ("movingAve", "LDS")]  # trial-major, the real order
    assert list(features) == ["__header__", "__version__", "__globals__", *(key for key, _ in expected)]
    for key, shape in expected:
        assert features[key].shape == shape and features[key].dtype == np.float64
    de = np.concatenate([features[f"de_LDS{i}"] for i in range(1, 16)], axis=1)
    assert 10 <= de.min() and de.max() <= 28  # the real range
    assert np.all(de.mean(axis=(0, 1))[0] > de.mean(axis=(0, 1))[1:])  # delta highest

    raw = scipy.io.loadmat(seed_tree / "Preprocessed_EEG" / name)
    assert list(raw)[3:] == [f"jl_eeg{i}" for i in range(1, 16)]
    for i in range(1, 16):
        assert raw[f"jl_eeg{i}"].shape == (62, 200 * t[i - 1] + 1) and raw[f"jl_eeg{i}"].dtype == np.float64
    assert 5 < raw["jl_eeg1"].std() < 100  # tens of microvolts
    for folder in ("ExtractedFeatures", "Preprocessed_EEG"):
        label = scipy.io.loadmat(seed_tree / folder / "label.mat")["label"]
        assert label.shape == (1, 15) and label.tolist()[0] == list(datasets.SEED.label_values)
        assert (seed_tree / folder / "readme.txt").is_file()


def test_synthetic_seed_iv_layout(seed_iv_tree):
    features = scipy.io.loadmat(seed_iv_tree / "eeg_feature_smooth" / "2" / "10_20151021.mat")
    assert list(features)[3:] == [f"{f}{i}" for i in range(1, 25) for f in ("de_movingAve", "de_LDS", "psd_movingAve", "psd_LDS")]
    raw = scipy.io.loadmat(seed_iv_tree / "eeg_raw_data" / "2" / "10_20151021.mat")
    w = windows("SEED-IV", 2)
    for i in range(1, 25):
        assert features[f"de_LDS{i}"].shape == (62, w[i - 1], 5)
        assert 800 * w[i - 1] + 1 <= raw[f"tyc_eeg{i}"].shape[1] < 800 * (w[i - 1] + 1)
    text = (seed_iv_tree / "ReadMe.txt").read_text()
    assert "session2_label = [2,1,3,0,0,2,0,2,3,3,2,3,2,0,1,1,2,1,0,3,0,1,3,1];" in text


def test_synthetic_is_deterministic_per_subject(tmp_path):
    a = synthetic.session_data("SEED", 2, 1, FRACTION, seed=0)[1]["de_LDS4"]
    b = synthetic.session_data("SEED", 2, 1, FRACTION, seed=0)[1]["de_LDS4"]
    c = synthetic.session_data("SEED", 2, 1, FRACTION, seed=1)[1]["de_LDS4"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def nearest_mean_accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> float:
    """Accuracy on ~train of the nearest class mean (z-scored with training statistics); x (N, F)."""
    z = (x - x[train].mean(0)) / x[train].std(0)
    means = np.stack([z[train & (y == c)].mean(0) for c in np.unique(y)])
    predicted = np.argmin(((z[~train, None] - means[None]) ** 2).sum(-1), axis=1)
    return float((predicted == y[~train]).mean())


@pytest.mark.parametrize("dataset", datasets.DATASETS)
def test_synthetic_class_signal_is_learnable_not_trivial(dataset):
    window, chance = datasets.get(dataset).window_s * electrodes.SAMPLING_RATE, 1 / datasets.get(dataset).n_classes
    de_scores, segment_scores = [], []
    for subject in (1, 2, 3, 4):
        raw, features = synthetic.session_data(dataset, subject, 1, trial_fraction=0.1)
        de, segments, y, trial = [], [], [], []
        for k, x in raw.items():
            n = features[f"de_LDS{k}"].shape[1]
            de.append(features[f"de_LDS{k}"].transpose(1, 0, 2).reshape(n, -1))
            segment = x[:, np.arange(n)[:, None] * window + np.arange(40)]  # (62, n, 40): the 200-ms segments
            spectrum = np.log(np.abs(fft.rfft(segment * np.hanning(40), axis=-1)) ** 2)[:, :, 1:11]  # 5-50 Hz
            segments.append(spectrum.transpose(1, 0, 2).reshape(n, -1))
            y += [datasets.get(dataset).trial_labels[1][k - 1]] * n
            trial += [k] * n
        y, train = np.array(y), np.array(trial) <= datasets.get(dataset).n_train_trials
        de_scores.append(nearest_mean_accuracy(np.concatenate(de), y, train))
        segment_scores.append(nearest_mean_accuracy(np.concatenate(segments), y, train))
    assert chance + 0.3 < np.mean(de_scores) < 0.99
    assert chance + 0.2 < np.mean(segment_scores) < 0.99


def test_synthetic_cli(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sst.data.synthetic", "--dataset", "SEED-IV", "--out", str(tmp_path / "SEED_IV"),
                             "--subjects", "3", "--sessions", "2", "--trial-fraction", "0.02", "--no-raw"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*.*"))] == [
        "SEED_IV/ReadMe.txt", "SEED_IV/eeg_feature_smooth/2/3_20151018.mat"]
