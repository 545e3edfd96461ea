"""Protocols: one entry per protocol, holding what it is made of and what it may claim.

    protocol = protocols.get("trial")                    # the entry of [training] protocol
    parts, label, split = protocol.run_split(cfg, spec, sessions)   # the sessions a run pools, and its split
    protocol.note                                        # what its numbers may claim (summaries, tables)
    protocol.roles(cfg, spec, pools, session)            # what each window of a session was to a finished run

An entry knows: which preprocessed sessions a run pools (`pools`, and which to load for a selection:
`loading`), how it splits them into training, validation and test samples (`split`), how the checkpoint
is chosen (`selects_on_test`: validation is the test set, as in the authors' code), what it may claim (its
note; `subject_dependent`: one model per subject-session, the paper's setting), which pool a finished run
depends on (`pool_key`: the subjects of a loso session, the sessions of a cross_session subject) and how
figures name its runs. Training (sst.training.loop, sst.models.baselines), --predict's window roles
(sst.reporting.predictions), result folders (sst.results.store), summaries and figures ask the entry;
none of them compares protocol names. A new protocol is one entry in PROTOCOLS and its tests
(tests/training/test_protocols.py).

`cfg` is the resolved configuration (sst.config.Config; not imported here: config.py takes its choices
from PROTOCOLS). Model selection, for every protocol: the checkpoint with the best validation accuracy, early stopping on
validation loss (sst.training.loop.Trainer); without validation samples, the last epoch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sst.data import datasets
from sst.errors import ConfigError, DataError
from sst.training.runspec import RunSpec


@dataclass(frozen=True)
class Split:
    """Sample indices into the run's pooled arrays. `val` may be empty (no early stopping)."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def roles(self, n: int) -> np.ndarray:
        """(n,) "train", "validation", "test" or "unseen" per pooled sample (the test role wins: under a
        protocol that validates on the test set its windows are "test")."""
        roles = np.full(n, "unseen", dtype=object)
        roles[self.train], roles[self.val], roles[self.test] = "train", "validation", "test"
        return roles


@dataclass(frozen=True)
class Pool:
    """One run's pooled samples, as the split sees them: (N,) int64 arrays per sample."""
    subject: np.ndarray
    session: np.ndarray
    trial: np.ndarray
    label: np.ndarray

    @classmethod
    def of(cls, parts: list) -> "Pool":
        """The pool of preprocessed sessions (sst.data.session_store.Session), concatenated in order."""
        return cls(np.concatenate([np.full(len(s.label), s.subject) for s in parts]),
                   np.concatenate([np.full(len(s.label), s.session) for s in parts]),
                   np.concatenate([np.asarray(s.trial) for s in parts]),
                   np.concatenate([np.asarray(s.label) for s in parts]))


def n_train_trials(cfg) -> int:
    """The trials 1..N of a session that train (with validation): [training] train_trials, or, left at 0, the
    dataset entry's standard split (SEED 9 of 15, SEED-IV 16 of 24); ConfigError if no trial is left to test."""
    dataset = datasets.get(cfg.data.dataset)
    n = cfg.training.train_trials or dataset.n_train_trials
    if n >= dataset.n_trials:
        raise ConfigError(f"{cfg.where('training', 'train_trials')} = {n} leaves no test trial: {dataset.name} has "
                          f"{dataset.n_trials} trials a session")
    return n


def trial_split(dataset: str, trial: np.ndarray, label: np.ndarray, val_trials_per_class: int,
                n_train: int | None = None) -> Split:
    """The standard split (trials 1..n_train train, the others test; n_train: the dataset entry's n_train_trials
    unless given: SEED trials 1-9 / 10-15, SEED-IV 1-16 / 17-24); validation = the last `val_trials_per_class`
    training trials of each class, so no window of a validation trial is trained on and the test trials are
    never looked at."""
    n_train = n_train or datasets.get(dataset).n_train_trials
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


# ----------------------------------------------------------------------------- the protocols


class Protocol:
    """A subject-dependent protocol: one run per subject-session, trained and tested on that session alone.
    Subclasses change what they pool and how they split; the rest of the code asks these attributes."""

    name = ""
    note = ""                   # what its numbers may claim, printed beside them
    subject_dependent = True    # one model per subject-session: the paper's table 1 setting
    selects_on_test = False     # the test windows choose the checkpoint (and stop training early)
    pool_key: str | None = None     # the pool a run depends on (a record's field): subject_pool or session_pool
    pool_group_name = ""            # what its runs share a pool by: the session (loso) or the subject (cross_session)
    subject_axis = "subject"    # figures: what a run's subject is

    def loading(self, subjects, sessions) -> tuple:
        """(subjects, sessions) to load for runs of these (None: every one preprocessed)."""
        return subjects, sessions

    def pools(self, spec: RunSpec, sessions: list) -> list:
        """The preprocessed sessions a run pools."""
        return [s for s in sessions if (s.subject, s.session) == (spec.subject, spec.session)]

    def split(self, cfg, spec: RunSpec, pool: Pool) -> Split:
        raise NotImplementedError

    def pool_now(self, spec: RunSpec, sessions: list) -> list[int] | None:
        """The pool (pool_key) a run of `spec` would have now, given the preprocessed `sessions`."""
        return None

    def pool_group(self, spec: RunSpec) -> int | None:
        """Runs of one group must have pooled the same (a loso session's subjects); None: no pool."""
        return None

    def run_label(self, subject: int) -> str:
        """How figures name a run's subject."""
        return f"sub{subject:02d}"

    def run_split(self, cfg, spec: RunSpec, sessions: list) -> tuple[list, np.ndarray, Split]:
        """The sessions a run pools, their labels (N,) and the split; DataError if it cannot be made.

        Cheap (trial numbers and labels only): run.py calls it for every run before writing anything.
        """
        parts = self.pools(spec, sessions)
        pool = Pool.of(parts)
        split = self.split(cfg, spec, pool)
        label = pool.label
        if len(split.train) == 0 or len(split.test) == 0:
            raise DataError(f"{spec.name}: protocol {self.name} leaves {len(split.train)} training and "
                            f"{len(split.test)} test samples")
        untrained = sorted(set(label[split.test].tolist()) - set(label[split.train].tolist()))
        if untrained:   # the model could never predict it: every test window of that class would count as an error
            names = ", ".join(f"{c} ({datasets.get(cfg.data.dataset).class_names[c]})" for c in untrained)
            tested = next((p for p in parts if (p.subject, p.session) == (spec.subject, spec.session)), parts[0])
            raise DataError(f"{tested.path}: class {names} has test windows but no training window under protocol "
                            f"{self.name} ({spec.name}); check the session's labels")
        return parts, label, split

    def roles(self, cfg, spec: RunSpec, pools: dict, session) -> np.ndarray:
        """(N,) what each window of a preprocessed session was to a finished run: "train", "validation" (it
        chose the checkpoint), "test" or "unseen". `pools`: the run's recorded subject_pool and session_pool."""
        n = len(session.label)
        if (session.subject, session.session) != (spec.subject, spec.session):
            return np.full(n, "unseen", dtype=object)
        return self.split(cfg, spec, Pool.of([session])).roles(n)


class TrialProtocol(Protocol):
    """trial (the default): whole trials held out, the dataset's standard split; validation from training trials."""

    name = "trial"
    note = "honest: whole trials held out, validation from training trials"

    def split(self, cfg, spec: RunSpec, pool: Pool) -> Split:
        t, n_train = cfg.training, n_train_trials(cfg)
        split = trial_split(cfg.data.dataset, pool.trial, pool.label, t.val_trials_per_class, n_train)
        untrained = sorted(set(pool.label[pool.trial <= n_train]) - set(pool.label[split.train]))
        if untrained:   # e.g. SEED-IV: 2 training trials of class 3 in session 1, of class 0 in session 3
            name = datasets.get(cfg.data.dataset).class_names[untrained[0]]
            raise ConfigError(f"{cfg.where('training', 'val_trials_per_class')} = {t.val_trials_per_class} takes every "
                              f"training trial of class {untrained[0]} ({name}) of {spec.name} for validation; "
                              f"use a smaller value")
        return split


class PaperProtocol(Protocol):
    """paper: the standard split, the test set as validation, as the authors' code does (optimistic)."""

    name = "paper"
    note = "OPTIMISTIC: the test set is used for early stopping and checkpoint choice, as in the authors' code"
    selects_on_test = True

    def split(self, cfg, spec: RunSpec, pool: Pool) -> Split:
        s = trial_split(cfg.data.dataset, pool.trial, pool.label, 0, n_train_trials(cfg))
        return Split(s.train, s.test, s.test)  # the authors' code validates on the test set


class RandomProtocol(Protocol):
    """random: windows split at random (leaky), as the public ports do."""

    name = "random"
    note = "LEAKY: adjacent windows of one trial fall in both train and test"

    def split(self, cfg, spec: RunSpec, pool: Pool) -> Split:
        t = cfg.training    # the base seed: repeats differ in training only, never in their split
        return random_split(len(pool.label), t.random_test_fraction, t.val_fraction, t.seed)


class LosoProtocol(Protocol):
    """loso: leave one subject out (a run's subject is the held-out one); validation = the next training
    subject, cyclically. A run pools every preprocessed subject of its session."""

    name = "loso"
    note = "honest: leave one subject out, validation from another training subject"
    subject_dependent = False
    pool_key = "subject_pool"
    pool_group_name = "session"
    subject_axis = "held-out subject (leave-one-subject-out)"

    def loading(self, subjects, sessions) -> tuple:
        return None, sessions

    def pools(self, spec: RunSpec, sessions: list) -> list:
        return [s for s in sessions if s.session == spec.session]

    def pool_now(self, spec: RunSpec, sessions: list) -> list[int]:
        return sorted(int(s.subject) for s in self.pools(spec, sessions))

    def pool_group(self, spec: RunSpec) -> int:
        return spec.session

    def run_label(self, subject: int) -> str:
        return f"test sub{subject:02d}"

    def split(self, cfg, spec: RunSpec, pool: Pool) -> Split:
        subject = pool.subject
        others = np.unique(subject[subject != spec.subject])
        if len(others) < 2:
            raise DataError(f"{cfg.where('training', 'protocol')} = loso needs at least 3 preprocessed subjects for "
                            f"session {spec.session}, found {len(others) + 1} under {cfg.path.preprocessed_root}")
        val_subject = others[np.searchsorted(others, spec.subject) % len(others)]
        test, val = subject == spec.subject, subject == val_subject
        return Split(np.flatnonzero(~test & ~val), np.flatnonzero(val), np.flatnonzero(test))

    def roles(self, cfg, spec: RunSpec, pools: dict, session) -> np.ndarray:
        n = len(session.label)
        roles = np.full(n, "unseen", dtype=object)
        if session.session != spec.session or session.subject not in pools["subject_pool"]:
            return roles
        # the split depends on the subject alone: one sample per pooled subject stands for its whole session
        pool = np.asarray(sorted(pools["subject_pool"]))
        zeros = np.zeros_like(pool)
        split = self.split(cfg, spec, Pool(pool, zeros + spec.session, zeros, zeros))
        roles[:] = split.roles(len(pool))[np.searchsorted(pool, session.subject)]
        return roles


class CrossSessionProtocol(Protocol):
    """cross_session: per subject, one session held out (a run's session is the tested one), trained on the
    others; validation from the training sessions only. A run pools every preprocessed session of its subject."""

    name = "cross_session"
    note = "honest: per subject, one session held out, trained on the others, validation from those"
    subject_dependent = False
    pool_key = "session_pool"
    pool_group_name = "subject"

    def loading(self, subjects, sessions) -> tuple:
        return subjects, None

    def pools(self, spec: RunSpec, sessions: list) -> list:
        return [s for s in sessions if s.subject == spec.subject]

    def pool_now(self, spec: RunSpec, sessions: list) -> list[int]:
        return sorted(int(s.session) for s in self.pools(spec, sessions))

    def pool_group(self, spec: RunSpec) -> int:
        return spec.subject

    def split(self, cfg, spec: RunSpec, pool: Pool) -> Split:
        if len(np.unique(pool.session)) < 2:
            raise DataError(f"{cfg.where('training', 'protocol')} = cross_session needs at least 2 preprocessed "
                            f"sessions of subject {spec.subject}, found {len(np.unique(pool.session))} under "
                            f"{cfg.path.preprocessed_root}")
        return cross_session_split(pool.session, pool.trial, pool.label, spec.session,
                                   cfg.training.val_trials_per_class)

    def roles(self, cfg, spec: RunSpec, pools: dict, session) -> np.ndarray:
        n = len(session.label)
        if session.subject != spec.subject or session.session not in pools["session_pool"]:
            return np.full(n, "unseen", dtype=object)
        # validation trials are chosen within each training session: this session's roles need it alone
        split = cross_session_split(np.full(n, session.session), np.asarray(session.trial), np.asarray(session.label),
                                    spec.session, cfg.training.val_trials_per_class)
        return split.roles(n)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (TrialProtocol(), PaperProtocol(), RandomProtocol(),
                                                      LosoProtocol(), CrossSessionProtocol())}


def get(name: str) -> Protocol:
    """The entry of a protocol name ([training] protocol); ConfigError naming the known ones otherwise."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"[training] protocol: expected one of {', '.join(PROTOCOLS)}, got {name!r}") from None


def of(cfg) -> Protocol:
    """The protocol entry of a configuration."""
    return get(cfg.training.protocol)


def run_split(cfg, spec: RunSpec, sessions: list) -> tuple[list, np.ndarray, Split]:
    """The protocol's run_split for cfg (see Protocol.run_split)."""
    return of(cfg).run_split(cfg, spec, sessions)


def subject_pool(parts: list) -> list[int]:
    """The subjects of a run's pooled sessions (run_split), sorted."""
    return sorted(int(s.subject) for s in parts)


def session_pool(parts: list) -> list[int]:
    """The sessions of a run's pooled sessions (run_split), sorted and distinct."""
    return sorted({int(s.session) for s in parts})
