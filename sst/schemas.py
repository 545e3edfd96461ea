"""What each file the tools read back must hold: one schema per kind of file, checked in one place.

    problem = check(record, RUN_RECORD)     # None, or what is wrong, e.g. "accuracy: expected a number in [0, 1], got 'high'"
    problem = check_present(checkpoint, CHECKPOINT_FIELDS)   # fields not every version wrote, where present

Files written by Preprocess.py and run.py can be truncated (a full disk, a copy cut short) or edited
by hand. Whoever reads one checks it here first, then decides (docs/guarantees.md):
  runs/<run>.json              set aside (renamed <run>.json.damaged) and the run redone
  checkpoints/<run>.partial.pt set aside (renamed .damaged) and the run started over
  <session>/manifest.json      the session counts as not preprocessed (Preprocess.py rebuilds it)
  checkpoints/<run>.pt         --explain and --predict stop with an error naming it
"""
from __future__ import annotations

import math
from typing import Any, Callable

Check = Callable[[Any], bool]


def _tensor(x) -> bool:
    import torch  # here, not at the top: Preprocess.py reads manifests and must not pay torch's import (1 s)

    return torch.is_tensor(x)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _count(x) -> bool:
    return _int(x) and x >= 0


def _list_of(check: Check) -> Check:
    return lambda x: isinstance(x, list) and all(check(v) for v in x)


def _square_counts(x) -> bool:
    return (isinstance(x, list) and len(x) > 0 and all(isinstance(r, list) and len(r) == len(x) for r in x)
            and all(_count(v) for r in x for v in r))


def _epoch_row(x) -> bool:
    return (isinstance(x, dict) and _int(x.get("epoch")) and _number(x.get("train_loss"))
            and all(_number(v) for k, v in x.items() if k != "epoch"))


def _array_meta(x) -> bool:
    return (isinstance(x, dict) and _list_of(_count)(x.get("shape")) and isinstance(x.get("dtype"), str))


Schema = dict[str, tuple[Check, str]]

RUN_RECORD: Schema = {
    "run": (lambda x: isinstance(x, str), "a run name"),
    "subject": (_int, "an integer"),
    "session": (_int, "an integer"),
    "protocol": (lambda x: isinstance(x, str), "a protocol name"),
    "dataset": (lambda x: isinstance(x, str), "a dataset name"),
    "accuracy": (lambda x: _number(x) and 0 <= x <= 1, "a number in [0, 1]"),
    "macro_f1": (lambda x: _number(x) and 0 <= x <= 1, "a number in [0, 1]"),
    "kappa": (_number, "a number"),
    "test_loss": (_number, "a finite number"),
    "confusion_matrix": (_square_counts, "a square matrix of counts"),
    "n_train": (_count, "a count"),
    "n_val": (_count, "a count"),
    "n_test": (_count, "a count"),
    "best_epoch": (_count, "a count"),
    "epochs_run": (_count, "a count"),
    "history": (_list_of(_epoch_row), "a list of epoch rows"),
    "seconds": (_number, "a number"),
    "config_key": (lambda x: isinstance(x, str), "a configuration fingerprint"),
}

PARTIAL_STATE: Schema = {
    "config_key": (lambda x: isinstance(x, str), "a configuration fingerprint"),
    "net": (lambda x: isinstance(x, dict) and all(_tensor(v) for v in x.values()), "a state dict"),
    "optimizer": (lambda x: isinstance(x, dict) and "state" in x and "param_groups" in x, "an optimizer state"),
    "shuffle": (_tensor, "a generator state"),
    "torch_rng": (_tensor, "a generator state"),
    "history": (_list_of(_epoch_row), "a list of epoch rows"),
    "best": (lambda x: isinstance(x, dict) and _count(x.get("epoch")) and _count(x.get("wait"))
             and all(isinstance(x.get(k), (int, float)) for k in ("val_accuracy", "val_loss"))
             and (x.get("state") is None or isinstance(x.get("state"), dict)),
             "the early-stopping fields (epoch, wait, val_accuracy, val_loss, state)"),
}

CHECKPOINT: Schema = {
    "model": (lambda x: isinstance(x, dict) and all(_tensor(v) for v in x.values()), "a state dict"),
    "config": (lambda x: isinstance(x, dict), "the resolved configuration"),
    "run": (lambda x: isinstance(x, str), "a run name"),
    "subject": (_int, "an integer"),
    "session": (_int, "an integer"),
    "epoch": (_count, "a count"),
    "normalization": (lambda x: isinstance(x, dict), "the input statistics"),
}

def _numbers_tensor(x) -> bool:
    import torch

    return torch.is_tensor(x) and (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32,
                                                                        torch.int64, torch.uint8))


# A best checkpoint's fields that not every version wrote, checked where present (check_present).
CHECKPOINT_FIELDS: Schema = {
    "normalization": (lambda x: isinstance(x, dict) and all(isinstance(k, str) and _numbers_tensor(v) for k, v in x.items()),
                      "the input statistics (names to tensors of numbers)"),
    "subject_pool": (_list_of(_int), "a list of subject numbers"),
    "session_pool": (_list_of(_int), "a list of session numbers"),
    "code": (lambda x: x is None or (isinstance(x, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                                 for k, v in x.items())),
             "a code identity (names to digests)"),
    "precision": (lambda x: isinstance(x, str), "a precision name"),
    "C": (_number, "a number"),
}

MANIFEST: Schema = {
    "dataset": (lambda x: isinstance(x, str), "a dataset name"),
    "subject": (_int, "an integer"),
    "session": (_int, "an integer"),
    "data": (lambda x: isinstance(x, dict), "the [data] configuration"),
    "n_samples": (_count, "a count"),
    "arrays": (lambda x: isinstance(x, dict) and {"de", "label", "trial"} <= set(x) and all(map(_array_meta, x.values())),
               "the arrays' shapes and dtypes, de, label and trial among them"),
}


def check_present(record: Any, schema: Schema) -> str | None:
    """None if each key of `schema` that `record` holds has a valid value (keys it lacks are fine), else the
    first problem; `record` must be a mapping."""
    if not isinstance(record, dict):
        return f"expected a record (a mapping), got {type(record).__name__}"
    return check({k: v for k, v in record.items() if k in schema}, {k: s for k, s in schema.items() if k in record})


def check(record: Any, schema: Schema) -> str | None:
    """None if `record` holds every key of `schema` with a valid value, else the first problem."""
    if not isinstance(record, dict):
        return f"expected a record (a mapping), got {type(record).__name__}"
    for key, (valid, expected) in schema.items():
        if key not in record:
            return f"{key}: missing"
        if not valid(record[key]):
            shown = repr(record[key])
            return f"{key}: expected {expected}, got {shown if len(shown) <= 40 else shown[:37] + '...'}"
    return None
