"""TODO docstring (from training.py)"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sst.config import Config
from sst.data import datasets
from sst.errors import ConfigError, DataError
from sst.training.runspec import RunSpec


@dataclass(frozen=True)
class Split:
    """Sample indices into the run's pooled arrays. `val` may be empty (no early stopping)."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def trial_split(dataset: str, trial: np.ndarray, label: np.ndarray, val_trials_per_class: int) -> Split:
    """Standard split (SEED trials 1-9 / 10-15, SEED-IV 1-16 / 17-24); validation = the last
    `val_trials_per_class` training trials of each class, so no window of a validation trial
    is trained on and the test trials are never looked at."""
    n_train = datasets.get(dataset).n_train_trials
    train_mask = trial <= n_train
    val_mask = np.zeros_like(train_mask)
    if val_trials_per_class:
        for c in np.unique(label[train_mask]):
            trials_c = np.unique(trial[train_mask & (label == c)])
            val_mask |= np.isin(trial, trials_c[-val_trials_per_class:]) & train_mask
    return Split(np.flatnonzero(train_mask & ~val_mask), np.flatnonzero(val_mask), np.flatnonzero(~train_mask))


def random_split(n: int, test_fraction: float, val_fraction: float, seed: int) -> Split:
    """Random split of windows (leaky: neighbouring 1-s windows of a trial are nearly identical)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round((n - n_test) * val_fraction))
    return Split(np.sort(perm[n_test + n_val:]), np.sort(perm[n_test:n_test + n_val]), np.sort(perm[:n_test]))


def cross_session_split(session: np.ndarray, trial: np.ndarray, label: np.ndarray, test_session: int,
                        val_trials_per_class: int) -> Split:
    """One subject: test = every window of `test_session`, train = the other sessions, validation = the
    last `val_trials_per_class` trials of each class in each training session (never the test session)."""
    test = session == test_session
    val = np.zeros_like(test)
    if val_trials_per_class:
        for k in np.unique(session[~test]):
            in_k = session == k
            for c in np.unique(label[in_k]):
                trials_c = np.unique(trial[in_k & (label == c)])
                val |= in_k & np.isin(trial, trials_c[-val_trials_per_class:])
    return Split(np.flatnonzero(~test & ~val), np.flatnonzero(val), np.flatnonzero(test))


def make_split(cfg: Config, spec: RunSpec, subject: np.ndarray, trial: np.ndarray, label: np.ndarray,
               session: np.ndarray | None = None) -> Split:
    """The protocol's split of one run's pooled samples (see README: Protocols); `session` per sample
    is needed by cross_session only."""
    t = cfg.training
    if t.protocol == "cross_session":
        if len(np.unique(session)) < 2:
            raise DataError(f"{cfg.where('training', 'protocol')} = cross_session needs at least 2 preprocessed sessions "
                            f"of subject {spec.subject}, found {len(np.unique(session))} under "
                            f"{cfg.path.preprocessed_root}")
        return cross_session_split(session, trial, label, spec.session, t.val_trials_per_class)
    if t.protocol == "trial":
        split = trial_split(cfg.data.dataset, trial, label, t.val_trials_per_class)
        untrained = sorted(set(label[trial <= datasets.get(cfg.data.dataset).n_train_trials]) - set(label[split.train]))
        if untrained:   # e.g. SEED-IV: 2 training trials of class 3 in session 1, of class 0 in session 3
            name = datasets.get(cfg.data.dataset).class_names[untrained[0]]
            raise ConfigError(f"{cfg.where('training', 'val_trials_per_class')} = {t.val_trials_per_class} takes every "
                              f"training trial of class {untrained[0]} ({name}) of {spec.name} for validation; "
                              f"use a smaller value")
        return split
    if t.protocol == "paper":
        s = trial_split(cfg.data.dataset, trial, label, 0)
        return Split(s.train, s.test, s.test)  # the authors' code validates on the test set
    if t.protocol == "random":
        return random_split(len(label), t.random_test_fraction, t.val_fraction, t.seed)
    # loso: test = the held-out subject; validation = the next training subject (cyclically)
    others = np.unique(subject[subject != spec.subject])
    if len(others) < 2:
        raise DataError(f"{cfg.where('training', 'protocol')} = loso needs at least 3 preprocessed subjects for "
                        f"session {spec.session}, found {len(others) + 1} under {cfg.path.preprocessed_root}")
    val_subject = others[np.searchsorted(others, spec.subject) % len(others)]
    test = subject == spec.subject
    val = subject == val_subject
    return Split(np.flatnonzero(~test & ~val), np.flatnonzero(val), np.flatnonzero(test))


def run_split(cfg: Config, spec: RunSpec, sessions: list) -> tuple[list, np.ndarray, Split]:
    """The sessions a run pools, their labels (N,) and the protocol's split; DataError if it cannot be made.

    Cheap (trial numbers and labels only): main() calls it for every run before writing anything.
    """
    if cfg.training.protocol == "loso":
        parts = [s for s in sessions if s.session == spec.session]
    elif cfg.training.protocol == "cross_session":
        parts = [s for s in sessions if s.subject == spec.subject]
    else:
        parts = [s for s in sessions if (s.subject, s.session) == (spec.subject, spec.session)]
    subject = np.concatenate([np.full(len(s.label), s.subject) for s in parts])
    session = np.concatenate([np.full(len(s.label), s.session) for s in parts])
    trial = np.concatenate([np.asarray(s.trial) for s in parts])
    label = np.concatenate([np.asarray(s.label) for s in parts])
    split = make_split(cfg, spec, subject, trial, label, session)
    if len(split.train) == 0 or len(split.test) == 0:
        raise DataError(f"{spec.name}: protocol {cfg.training.protocol} leaves "
                        f"{len(split.train)} training and {len(split.test)} test samples")
    untrained = sorted(set(label[split.test].tolist()) - set(label[split.train].tolist()))
    if untrained:   # the model could never predict it: every test window of that class would count as an error
        names = ", ".join(f"{c} ({datasets.get(cfg.data.dataset).class_names[c]})" for c in untrained)
        tested = next((p for p in parts if (p.subject, p.session) == (spec.subject, spec.session)), parts[0])
        raise DataError(f"{tested.path}: class {names} has test windows but no training window under protocol "
                        f"{cfg.training.protocol} ({spec.name}); check the session's labels")
    return parts, label, split


def subject_pool(parts: list) -> list[int]:
    """The subjects of a run's pooled sessions (run_split), sorted."""
    return sorted(int(s.subject) for s in parts)
