"""--predict: a finished run's checkpoint applied to a preprocessed session, with what each window was to it.

    python run.py -c SEED.ini --predict sub01_ses1 --subjects 1 --sessions 2   # predictions/sub01_ses1_on_sub01_ses2.csv

The CSV has one row per window: trial, window (0-based within its trial), true and predicted label, one
probability per class, and `split`: "train", "validation", "test" (the run's own split of that window,
rebuilt by the protocol's functions), "unseen" or "unknown" (docs/outputs.md).
"""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np

from sst import fileio, schemas
from sst.config import Config
from sst.data import datasets, session_store
from sst.errors import ConfigError, DataError, UserError
from sst.models.trained import TrainedModel
from sst.reporting import experiments
from sst.results import store
from sst.results.store import ResultDir
from sst.training import protocols, runspec
from sst.training.metrics import confusion_matrix, scores
from sst.training.runspec import RunSpec


def predict(cfg: Config, out: ResultDir, run: str, subjects, sessions, base: Path) -> int:
    """--predict RUN: the run's best checkpoint on one preprocessed subject-session; writes
    predictions/<RUN>_on_subSS_sesK.csv (its `split` column: what each window was to the run) and prints
    accuracy, macro-F1 and kappa, and a warning when the run trained on that session. `base`: the INI's
    result_path, whose --set subfolders are searched when the run is not under cfg's (experiments.checkpoint_path)."""
    spec = runspec.run_named(run, "--predict")
    if not subjects or not sessions or len(subjects) != 1 or len(sessions) != 1:
        raise UserError(f"--predict {run}: give one subject and one session, e.g. --subjects 3 --sessions 2")
    subject, session_number = subjects[0], sessions[0]
    trained = TrainedModel.load(experiments.checkpoint_path(cfg, spec.name, base))
    theirs = trained.cfg.to_dict()["data"]
    changed = [k for k, v in cfg.to_dict()["data"].items() if theirs.get(k) != v]
    if changed:
        raise ConfigError(f"{cfg.where('data', changed[0])}: {cfg.to_dict()['data'][changed[0]]!r}, but {run} was "
                          f"trained with {theirs[changed[0]]!r}; preprocess with the run's [data]")
    session = session_store.load_preprocessed(cfg, [subject], [session_number])[0]
    probabilities = trained.probabilities(session)
    bad = int(np.count_nonzero(~np.isfinite(probabilities).all(axis=1)))
    if bad:     # finite weights can still overflow: no accuracy is reported from NaN probabilities
        raise DataError(f"{trained.path}: its network gives NaN/Inf probabilities for {bad} of {len(probabilities)} "
                        f"windows of sub{subject:02d}_ses{session_number}; nothing was written")
    truth, predicted = np.asarray(session.label), probabilities.argmax(1)
    trial = np.asarray(session.trial)
    window = np.arange(len(trial)) - np.searchsorted(trial, trial)    # 0-based window within its trial
    roles = window_roles(trained, out, session)
    names = datasets.get(trained.cfg.data.dataset).class_names
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", "window", "true_label", "predicted_label", *(f"p_{name}" for name in names), "split"])
    for row in zip(trial, window, truth, predicted, roles, *probabilities.T):
        writer.writerow([int(row[0]), int(row[1]), int(row[2]), int(row[3]), *(f"{p:.6f}" for p in row[5:]), row[4]])
    path = fileio.child(out.root / "predictions", f"{run}_on_sub{subject:02d}_ses{session_number}.csv")
    with fileio.atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    s = scores(confusion_matrix(truth, predicted, trained.cfg.model.nb_class))
    print(f"{run} on sub{subject:02d}_ses{session_number}: {len(truth)} windows, accuracy {100 * s['accuracy']:.2f}%  "
          f"macro-F1 {s['macro_f1']:.3f}  kappa {s['kappa']:.3f}")
    seen = np.isin(roles, ("train", "validation"))
    if seen.any():
        test = roles == "test"
        only = f"accuracy on its {test.sum()} test windows only: {100 * (truth[test] == predicted[test]).mean():.2f}%" \
            if test.any() else "none of them is a test window"
        chose = f" (under protocol {trained.cfg.training.protocol} the test windows chose the checkpoint too)" \
            if protocols.of(trained.cfg).selects_on_test else ""
        print(f"warning: {run} trained on this session (protocol {trained.cfg.training.protocol}): {seen.sum()} of "
              f"{len(roles)} windows were training or validation windows, so the accuracy above is not a test "
              f"accuracy; {only}{chose}; the split column of the CSV marks each window", file=sys.stderr)
    elif (roles == "unknown").any():
        print(f"warning: {run}: which sessions it trained on is not recorded (a checkpoint of an earlier version "
              f"without its runs/{run}.json); the split column of the CSV says unknown", file=sys.stderr)
    print(path)
    return 0


def window_roles(trained: TrainedModel, out: ResultDir, session) -> np.ndarray:
    """(N,) what each window of a preprocessed session was to a trained run: "train", "validation" (it chose
    the checkpoint), "test", "unseen" (not in the run's data), or "unknown" (a checkpoint of an earlier version
    whose pool, which its protocol depends on, is recorded nowhere). The run's split is rebuilt by its
    protocol's entry (Protocol.roles) from the pools it recorded."""
    cfg, ckpt = trained.cfg, trained.checkpoint
    spec, protocol = RunSpec(ckpt["subject"], ckpt["session"]), protocols.of(cfg)
    pools = {k: ckpt[k] for k in ("subject_pool", "session_pool") if k in ckpt}
    if protocol.pool_key is not None and protocol.pool_key not in pools:     # an earlier checkpoint: its run record
        try:
            record = store.json_load(out.run_json(spec))
            pools = {k: record[k] for k in ("subject_pool", "session_pool")}
        except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError):
            pools = None
        if pools is None or schemas.check(pools, {k: schemas.CHECKPOINT_FIELDS[k] for k in pools}):
            return np.full(len(session.label), "unknown", dtype=object)     # no record, or pools edited by hand
    return protocol.roles(cfg, spec, pools, session)
