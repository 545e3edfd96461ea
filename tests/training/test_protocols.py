"""sst/training/protocols.py: each protocol's pools, split, model selection and window roles, and a run's
normalisation statistics taken from its training samples only (fast: no training)."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY_MODEL, write_ini
from sst import config, errors
from sst.training import loop, protocols, runspec

SEED_LABELS = np.array([1, 0, -1, -1, 0, 1, -1, 0, 1, 1, 0, -1, 0, 1, -1]) + 1   # label.mat, written out


def pool(subject, trial, label) -> protocols.Pool:
    """The samples of one session (session 1) as a protocol's split sees them."""
    return protocols.Pool(np.asarray(subject), np.ones_like(subject), np.asarray(trial), np.asarray(label))


def test_trial_split_holds_out_whole_trials():
    trial = np.repeat(np.arange(1, 16), 4)
    label = SEED_LABELS[trial - 1]
    s = protocols.trial_split("SEED", trial, label, val_trials_per_class=1)
    assert set(trial[s.test]) == set(range(10, 16))
    # the last training trial of each class: negative 7, neutral 8, positive 9
    assert set(trial[s.val]) == {7, 8, 9}
    assert set(trial[s.train]) == set(range(1, 7))
    assert len(np.intersect1d(s.train, s.val)) == 0
    no_val = protocols.trial_split("SEED", trial, label, val_trials_per_class=0)
    assert len(no_val.val) == 0 and set(trial[no_val.train]) == set(range(1, 10))


def test_trial_split_that_would_leave_a_class_untrained_is_refused(tmp_path):
    from sst.data import datasets

    cfg = config.load_config(write_ini(tmp_path / "iv.ini", "SEED_IV.ini", training={"val_trials_per_class": 2}))
    labels = np.array(datasets.get("SEED-IV").trial_labels[1])   # session 1: trials 1-16 hold class 3 twice
    trial = np.repeat(np.arange(1, 25), 3)
    with pytest.raises(errors.ConfigError, match=r"iv.ini: \[training\] val_trials_per_class = 2 takes every training "
                                              r"trial of class 3 \(happy\) of sub01_ses1"):
        protocols.of(cfg).split(cfg, runspec.RunSpec(1, 1), pool(np.ones_like(trial), trial, labels[trial - 1]))
    one = protocols.of(cfg).split(cfg.replace(training={"val_trials_per_class": 1}), runspec.RunSpec(1, 1),
                                  pool(np.ones_like(trial), trial, labels[trial - 1]))
    assert set(labels[trial[one.train] - 1]) == {0, 1, 2, 3}


def test_random_split_is_a_seeded_partition():
    s = protocols.random_split(1000, test_fraction=0.4, val_fraction=0.1, seed=3)
    together = np.concatenate([s.train, s.val, s.test])
    assert sorted(together.tolist()) == list(range(1000))
    assert len(s.test) == 400 and len(s.val) == 60
    again = protocols.random_split(1000, 0.4, 0.1, seed=3)
    assert np.array_equal(s.test, again.test)
    assert not np.array_equal(s.test, protocols.random_split(1000, 0.4, 0.1, seed=4).test)


def test_loso_split_tests_one_subject_and_validates_on_another(tmp_path):
    cfg = config.load_config(write_ini(tmp_path / "a.ini", training={"protocol": "loso"}))
    subject = np.repeat([1, 2, 3, 4], 5)
    s = protocols.of(cfg).split(cfg, runspec.RunSpec(2, 1), pool(subject, np.ones(20, int), np.zeros(20, int)))
    assert set(subject[s.test]) == {2}
    assert set(subject[s.val]) == {3}
    assert set(subject[s.train]) == {1, 4}
    last = protocols.of(cfg).split(cfg, runspec.RunSpec(4, 1), pool(subject, np.ones(20, int), np.zeros(20, int)))
    assert set(subject[last.val]) == {1}  # wraps around


def test_cross_session_split_holds_out_a_session():
    session = np.repeat([1, 2, 3], 30)
    trial = np.tile(np.repeat(np.arange(1, 16), 2), 3)
    label = SEED_LABELS[trial - 1]
    s = protocols.cross_session_split(session, trial, label, test_session=2, val_trials_per_class=1)
    assert set(session[s.test]) == {2} and len(s.test) == 30
    assert set(session[s.val]) == {1, 3} and set(session[s.train]) == {1, 3}
    # validation: in each training session the last trial of each class (negative 15, neutral 13, positive 14)
    for k in (1, 3):
        assert set(trial[s.val][session[s.val] == k]) == {13, 14, 15}
    assert len(np.intersect1d(s.train, s.val)) == 0


# ----------------------------------------------------------------------------- every protocol, fast


@dataclass(frozen=True, eq=False)
class FakeSession:
    """A preprocessed session held in memory (sst.data.session_store.Session's fields): 15 SEED trials of 4
    windows, DE and raw values that differ per subject, session and window."""
    subject: int
    session: int
    de: np.ndarray
    eeg: np.ndarray
    label: np.ndarray
    trial: np.ndarray
    path: Path

    def source(self, name: str) -> np.ndarray:
        return getattr(self, name)


def fake_sessions(subjects=(1, 2, 3, 4), sessions=(1, 2, 3)) -> list[FakeSession]:
    out = []
    for s in subjects:
        for k in sessions:
            trial = np.repeat(np.arange(1, 16), 4)
            rng = np.random.default_rng([s, k])
            n = len(trial)
            out.append(FakeSession(s, k, rng.normal(s + k, 1, (n, 62, 5)).astype(np.float32),
                                   rng.normal(s - k, 1, (n, 62, 9)).astype(np.float32), SEED_LABELS[trial - 1],
                                   trial, Path(f"/fake/sub{s:02d}_ses{k}")))
    return out


def protocol_cfg(name: str) -> config.Config:
    return config.load_config(ROOT / "SEED.ini").replace(
        data={"input_width": 16, "temInput_length": 9}, model={k: int(v) for k, v in TINY_MODEL.items()},
        training={"protocol": name})


@pytest.mark.parametrize("name", protocols.PROTOCOLS)
def test_each_protocols_split_is_a_partition_of_what_it_pools(name):
    cfg, spec, sessions = protocol_cfg(name), runspec.RunSpec(2, 2), fake_sessions()
    protocol = protocols.get(name)
    parts, label, split = protocol.run_split(cfg, spec, sessions)
    n = len(label)
    assert sorted({(p.subject, p.session) for p in parts}) == {
        "loso": [(s, 2) for s in (1, 2, 3, 4)], "cross_session": [(2, k) for k in (1, 2, 3)]}.get(
        name, [(2, 2)])                                                 # what the protocol pools
    train, val, test = (set(x.tolist()) for x in (split.train, split.val, split.test))
    assert train and test and not train & val and not train & test and train | val | test == set(range(n))
    if protocol.selects_on_test:
        assert val == test                                              # the authors' code: the test set chooses
    else:
        assert not val & test and val                                   # validation from training data only
    subject = np.concatenate([np.full(len(p.label), p.subject) for p in parts])
    session = np.concatenate([np.full(len(p.label), p.session) for p in parts])
    trial = np.concatenate([p.trial for p in parts])
    tested = {"loso": subject == 2, "cross_session": session == 2}.get(name)
    if tested is not None:                                              # the held-out subject, the held-out session
        assert test == set(np.flatnonzero(tested).tolist())
    elif name != "random":                                              # the dataset's split: trials 10-15
        assert set(trial[split.test].tolist()) == set(range(10, 16))
    else:                                                               # leaky: trials in both
        assert set(trial[split.test].tolist()) & set(trial[split.train].tolist())


@pytest.mark.parametrize("name", protocols.PROTOCOLS)
def test_a_runs_statistics_come_from_its_training_samples_only(name):
    """The z-score of a run's inputs: the mean of its training samples, whatever the other samples hold."""
    cfg, spec, sessions = protocol_cfg(name), runspec.RunSpec(2, 2), fake_sessions()
    data = loop.build_run_data(cfg, spec, sessions)
    parts, _, split = protocols.of(cfg).run_split(cfg, spec, sessions)
    de = np.concatenate([p.de for p in parts])
    np.testing.assert_allclose(data.stats["de_mean"][0], de[split.train].mean(0), rtol=1e-5, atol=1e-5)
    moved = de.copy()
    moved[np.setdiff1d(np.arange(len(de)), split.train)] += 1000.0     # only validation and test samples change
    changed, offset = [], 0
    for p in parts:
        changed.append(FakeSession(p.subject, p.session, moved[offset:offset + len(p.label)], p.eeg, p.label, p.trial,
                                   p.path))
        offset += len(p.label)
    others = [s for s in sessions if s not in parts]
    assert np.array_equal(loop.build_run_data(cfg, spec, changed + others).stats["de_mean"], data.stats["de_mean"])


@pytest.mark.parametrize("name", protocols.PROTOCOLS)
def test_window_roles_are_the_runs_own_split(name):
    """--predict's roles of the run's own tested session agree with the split training made; a session the
    run did not pool is "unseen"."""
    cfg, spec, sessions = protocol_cfg(name), runspec.RunSpec(2, 2), fake_sessions()
    protocol = protocols.get(name)
    parts, _, split = protocol.run_split(cfg, spec, sessions)
    pools = {"subject_pool": protocols.subject_pool(parts), "session_pool": protocols.session_pool(parts)}
    tested = next(s for s in parts if (s.subject, s.session) == (2, 2))
    offset = sum(len(p.label) for p in parts[:parts.index(tested)])
    expected = split.roles(sum(len(p.label) for p in parts))[offset:offset + len(tested.label)]
    assert protocol.roles(cfg, spec, pools, tested).tolist() == expected.tolist()
    stranger = next(s for s in sessions if (s.subject, s.session) == (4, 1))    # pooled by none of them
    assert set(protocol.roles(cfg, spec, pools, stranger)) == {"unseen"}


def test_protocol_entries_say_what_they_may_claim():
    for name, protocol in protocols.PROTOCOLS.items():
        assert protocol.name == name and protocol.note
        assert protocol.note.split(":")[0] in ("honest", "OPTIMISTIC", "LEAKY")
    assert {n for n, p in protocols.PROTOCOLS.items() if not p.subject_dependent} == {"loso", "cross_session"}
    assert {n for n, p in protocols.PROTOCOLS.items() if p.selects_on_test} == {"paper"}


def test_a_new_protocol_is_one_entry(monkeypatch, tmp_path):
    """Registered in PROTOCOLS, a protocol is a [training] protocol choice and splits runs: nothing else to edit."""

    class FirstTrials(protocols.TrialProtocol):
        name = "first_trials"
        note = "honest: trials 1-6 train, 7-9 validate, 10-15 test, as trial with a fixed validation"

        def split(self, cfg, spec, pool):
            train, val = np.flatnonzero(pool.trial <= 6), np.flatnonzero((pool.trial > 6) & (pool.trial <= 9))
            return protocols.Split(train, val, np.flatnonzero(pool.trial > 9))

    monkeypatch.setitem(protocols.PROTOCOLS, "first_trials", FirstTrials())
    cfg = config.load_config(write_ini(tmp_path / "a.ini", training={"protocol": "first_trials"}))
    _, _, split = protocols.of(cfg).run_split(cfg, runspec.RunSpec(1, 1), fake_sessions((1,), (1,)))
    assert len(split.train) == 24 and len(split.val) == 12 and len(split.test) == 24


def test_the_split_size_is_a_key(tmp_path):
    """[training] train_trials: trials 1..N train (validation among them), the rest test, under trial and paper;
    0 keeps the dataset's split; a size that leaves no test trial is one error naming the key."""
    sessions = fake_sessions((1,), (1,))
    for name in ("trial", "paper"):
        cfg = protocol_cfg(name).replace(training={"train_trials": 6})
        parts, _, split = protocols.of(cfg).run_split(cfg, runspec.RunSpec(1, 1), sessions)
        trial = parts[0].trial
        assert set(trial[split.test]) == set(range(7, 16)) and set(trial[split.train]) <= set(range(1, 7))
    default = protocol_cfg("trial")
    assert protocols.n_train_trials(default) == 9 == protocols.n_train_trials(default.replace(training={"train_trials": 9}))
    cfg = config.load_config(write_ini(tmp_path / "a.ini", training={"train_trials": 15}))
    with pytest.raises(errors.ConfigError, match=r"a.ini: \[training\] train_trials = 15 leaves no test trial: SEED "
                                                 r"has 15 trials a session"):
        protocols.of(cfg).run_split(cfg, runspec.RunSpec(1, 1), sessions)
