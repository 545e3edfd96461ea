"""Run records: the one builder of runs/<run>.json, whatever the model kind.

    record = run_record(cfg, spec, out, truth, predicted, test_loss, split, pools, steps=..., ...)

A record holds what identifies the run (run, subject, session, protocol, dataset, model, repeat, seed), its
scores on the test samples (accuracy, macro-F1, kappa, per class, confusion), the split's sizes and the pools
its protocol depends on, a digest of its test windows (test_digest: runs are paired only on the same ones), its training (best epoch, epochs, history, seconds), where and how it ran (device,
precision), what made it (config_key, code) and the warnings that make its accuracy mean less. The model kind
adds its own fields (`extra`: the accelerator for the network, C and its grid for a baseline).
docs/outputs.md lists the fields; schemas.RUN_RECORD is what readers check.
"""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import numpy as np

from sst.training import metrics
from sst.training.runspec import run_seed

if TYPE_CHECKING:
    from sst.config import Config
    from sst.results.store import ResultDir
    from sst.training.protocols import Split
    from sst.training.runspec import RunSpec


def run_record(cfg: Config, spec: RunSpec, out: ResultDir, truth: np.ndarray, predicted: np.ndarray,
               test_loss: float, split: Split, pools: dict, *, steps: int, seconds: float, wall_seconds: float,
               device: str, best_epoch: int = 0, history: list | tuple = (), warnings: list | tuple = (),
               **extra) -> dict:
    """The record of a finished run; its warnings (the kind's, then result_warnings') are printed, one line each.

    `steps`: optimizer steps taken (fewer than 100 is a warning); `pools`: subject_pool and session_pool."""
    cm = metrics.confusion_matrix(truth, predicted, cfg.model.nb_class)
    warnings = [*warnings, *metrics.result_warnings(cfg, predicted, steps)]
    for warning in warnings:
        print(f"warning: {spec.name}: {warning}", flush=True)
    return {
        "run": spec.name, "subject": spec.subject, "session": spec.session,
        "protocol": cfg.training.protocol, "dataset": cfg.data.dataset, "model": cfg.model.name,
        "repeat": spec.repeat, "seed": run_seed(cfg, spec),
        **metrics.scores(cm), "test_loss": test_loss, "confusion_matrix": cm.tolist(),
        "n_train": len(split.train), "n_val": len(split.val), "n_test": len(split.test),
        "test_digest": test_digest(cfg, split, truth, pools),
        "subject_pool": pools["subject_pool"], "session_pool": pools["session_pool"],
        "best_epoch": best_epoch, "epochs_run": len(history), "history": list(history),
        "seconds": seconds, "wall_seconds": wall_seconds, "device": device, **extra,
        "config_key": out.config_key, "code": out.code, "precision": out.precision, "warnings": warnings,
    }


def test_digest(cfg: Config, split: Split, truth: np.ndarray, pools: dict) -> str:
    """Which windows a run was tested on, as 16 hex digits: the dataset, the pools (the sessions and subjects
    whose windows were stacked, in order), the test windows' indices into that stack and their labels. Two runs
    of one subject-session with the same digest were tested on the same windows, whatever model or seed; a
    changed split (random_test_fraction, train_trials, another protocol) changes it. --compare, --ablation and
    --paper-table pair runs only where the digests agree."""
    h = hashlib.sha256(json.dumps([cfg.data.dataset, pools["subject_pool"], pools["session_pool"]]).encode())
    h.update(np.asarray(split.test, dtype=np.int64).tobytes())
    h.update(np.asarray(truth, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]
