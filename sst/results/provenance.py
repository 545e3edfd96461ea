"""TODO docstring (from utils.py, results.py)"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import textwrap
from pathlib import Path

from sst import config
from sst.config import Config


def code_digest(source: str, filename: str = "<source>") -> str:
    """A short hash of Python code that ignores comments, docstrings and layout (its ast, unparsed):
    what the code does, not how it is worded. SyntaxError if it is not Python."""
    tree = ast.parse(textwrap.dedent(source), filename=filename)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()[:16]


# [training] keys that do not change what a run computes (nor does [path]): results made under
# other values are reused. (The accelerator computes the definition's maths, to float32 rounding, as a
# CUDA float32 run does.)
NON_RESULT_TRAINING_KEYS = ("device", "num_threads", "accelerator", "repeats")   # repeats: how many seeds, not which
# Keys added after result folders existed: left out of the key while they hold their default, so that
# results made before them keep their key.
ADDED_KEYS = {("model", "attention_block"), ("model", "name")}
# The code that computes a run (what it trains, how, on which inputs): its fingerprint is checked beside
# the key, with the [model] plugins files. A run is fingerprinted with the files its model uses
# (MODEL_CODE_FILES), so that editing a baseline does not make the network's results "other code".
CODE_FILES = ("model.py", "optim.py", "fastcpu.py", "training.py", "inputs.py", "baselines.py")
NETWORK_CODE_FILES = ("model.py", "optim.py", "fastcpu.py", "training.py", "inputs.py")
BASELINE_CODE_FILES = ("baselines.py", "training.py", "inputs.py")
PRECISIONS = ("float32", "bf16")


def result_key(cfg: Config, precision: str = "float32") -> str:
    """A short fingerprint of every setting that changes results (not paths, device, threads or the
    accelerator) and of the effective precision: "float32", or "bf16" (CUDA autocast, [training] amp).
    Float32 keys are those of earlier versions (keys added since count only when set)."""
    d = cfg.to_dict()
    del d["path"]
    for k in NON_RESULT_TRAINING_KEYS:
        del d["training"][k]
    del d["model"]["plugins"]       # paths of this machine; their code is in code_fingerprint
    for section, key in ADDED_KEYS:
        if d[section][key] == _default(section, key):
            del d[section][key]
    if precision != "float32":
        d["precision"] = precision
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _default(section: str, key: str):
    return next(f.default for f in dataclasses.fields(config.SECTIONS[section]) if f.name == key)


def precision(device, cfg: Config) -> str:
    """The effective precision of training on `device`: bf16 under CUDA autocast ([training] amp), else float32
    (the baselines: float64 on the CPU whatever the device, keyed as float32, "no autocast")."""
    network = cfg.model.name == "sst_emotionnet"
    return "bf16" if network and getattr(device, "type", device) == "cuda" and cfg.training.amp else "float32"


def code_fingerprint(cfg: Config) -> dict[str, str]:
    """{file: short hash} of the code that computes a run: CODE_FILES and the [model] plugins (plugin:<name>),
    each normalised so that comments, docstrings and layout do not count."""
    here = Path(__file__).resolve().parent
    names = NETWORK_CODE_FILES if cfg.model.name == "sst_emotionnet" else BASELINE_CODE_FILES
    files = {name: here / name for name in CODE_FILES if name in names}
    files |= {f"plugin:{p.name}": p for p in cfg.model.plugins}
    out = {}
    for name, path in files.items():
        try:
            out[name] = code_digest(path.read_text(encoding="utf-8"), str(path))
        except (OSError, SyntaxError, UnicodeDecodeError):
            out[name] = "unreadable"     # a plugin that cannot be read fails to import anyway
    return out
