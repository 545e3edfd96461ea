"""What made a result: its configuration's key, its precision and its code identity.

    result_key(cfg, "float32")                  # a digest of every setting that changes what a run computes
    identity([SSTEmotionNet, Trainer, ...], {"dataset SEED": {...}})   # {"model.A3DBAttention": "3f2a...", ...}
    changes(made, now)                          # "model.A3DBAttention" (what differs), or None

A result's code identity is built from what the run actually uses, however it was registered: from the
classes and functions given as roots (a model kind names them: the classes of the network it builds, its
training loop, its protocol's entry), it follows every name their code reads to the functions and classes of
the project, of a [model] plugins file or of code defined in Python (a notebook, a script calling run.main),
and digests each one's source with comments, docstrings and layout left out (code_digest); code without
source (made by exec) is digested by its bytecode. Facts given as data (the dataset's split sizes) are
digested as JSON. Library code (the standard library, torch, numpy) and the project's plumbing
(NOT_COMPUTING: errors, files, the command line, the INI parser, whose values the result key holds) are not
followed. Every reader of a result compares identities: training refuses other code's folder, --summarize
and --compare never mix two identities, --predict, --explain and load_trained say what differs.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import sys
import sysconfig
import types
from pathlib import Path
from typing import TYPE_CHECKING

from sst import config
from sst.runtime import code_digest

if TYPE_CHECKING:
    from sst.config import Config

# [training] keys that do not change what a run computes (nor does [path]): results made under
# other values are reused. (The accelerator computes the definition's maths, to float32 rounding, as a
# CUDA float32 run does.)
# compile and state_save likewise: a compiled float32 step computes the definition's maths to float32 rounding (a
# compiled bf16 step does not: its precision is "bf16-compiled", sst/training/graphed.py), and where the state is
# written changes no number.
NON_RESULT_TRAINING_KEYS = ("device", "num_threads", "accelerator", "repeats",   # repeats: how many seeds, not which
                            "compile", "state_save")
# Keys added after result folders existed: left out of the key while they hold their default, so that
# results made before them keep their key.
ADDED_KEYS = {("model", "attention_block"), ("model", "name"), ("model", "dgcnn_form"), ("model", "dgcnn_order"),
              ("model", "dgcnn_filters"), ("model", "dgcnn_hidden"), ("training", "train_trials"),
              ("training", "optimizer"), ("training", "momentum"), ("training", "lr_schedule"),
              ("training", "lr_step_epochs"), ("training", "lr_gamma")}
PRECISIONS = ("float32", "bf16", "bf16-compiled")     # sst.training.graphed.precision
# Project modules that compute nothing a result holds: not followed by the code identity.
NOT_COMPUTING = {"sst.errors", "sst.fileio", "sst.cli", "sst.plugins", "sst.config", "sst.schemas",
                 "sst.results.provenance"}


def result_key(cfg: Config, precision: str = "float32") -> str:
    """A short fingerprint of every setting that changes results (not paths, device, threads or the
    accelerator) and of the effective precision: "float32", "bf16" (CUDA autocast, [training] amp) or
    "bf16-compiled" (the same through torch.compile, [training] compile).
    Float32 keys are those of earlier versions (keys added since count only when set)."""
    d = cfg.to_dict()
    del d["path"]
    for k in NON_RESULT_TRAINING_KEYS:
        del d["training"][k]
    del d["model"]["plugins"]       # paths of this machine; their code is in the code identity
    for section, key in ADDED_KEYS:
        if d[section][key] == _default(section, key):
            del d[section][key]
    if precision != "float32":
        d["precision"] = precision
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _default(section: str, key: str):
    return next(f.default for f in dataclasses.fields(config.SECTIONS[section]) if f.name == key)


# ----------------------------------------------------------------------------- code identity


@functools.lru_cache(maxsize=None)
def _library_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    return tuple({Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths})


def _is_user_module(name: str | None) -> bool:
    """Whether a module is the project's, a plugin's or the user's own (a script, a notebook), not a library."""
    module = sys.modules.get(name or "")
    if module is None or name in NOT_COMPUTING:
        return False
    file = getattr(module, "__file__", None)
    if file is None:        # an interactive session, a notebook, code made by exec; not a built-in module
        return name not in sys.builtin_module_names and name.partition(".")[0] not in sys.stdlib_module_names
    path = Path(file).resolve()
    return not any(path.is_relative_to(root) for root in _library_roots())


def _code_objects(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _functions(obj) -> list:
    """The functions that make up a class (methods, properties, static and class methods) or a function."""
    if not inspect.isclass(obj):
        return [obj]
    out = []
    for _, value in sorted(vars(obj).items()):
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            out += [f for f in (value.fget, value.fset, value.fdel) if f is not None]
        elif inspect.isfunction(value):
            out.append(value)
    return out


def _bytecode_digest(code: types.CodeType) -> str:
    parts = []
    for c in _code_objects(code):
        consts = [repr(k) for k in c.co_consts if not isinstance(k, types.CodeType)]
        parts.append(repr((c.co_code, c.co_names, c.co_varnames, c.co_freevars, consts)))
    return "bytecode:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _source_digest(function) -> str:
    """The digest of a function's source (located by its code object), or of its bytecode without one."""
    try:
        return code_digest(inspect.getsource(function))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return _bytecode_digest(function.__code__)


def _class_values(cls) -> list[str]:
    """A class's own plain attributes (constants such as `sources = {"de": "de"}`), as text."""
    plain = (int, float, str, bool, type(None), tuple, list, dict, frozenset)
    return [f"{k}={v!r}" for k, v in sorted(vars(cls).items())
            if not k.startswith("__") and isinstance(v, plain)]


def _name(obj) -> str:
    module = obj.__module__
    if module.startswith("sst_plugin_"):       # sst.plugins names plugin modules after their path
        module = f"plugin {Path(sys.modules[module].__file__).name}"
    return f"{module}.{obj.__qualname__}"


def identity(roots, facts: dict | None = None, unused: tuple[str, ...] = ()) -> dict[str, str]:
    """{qualified name: digest} of the code reachable from `roots` (classes, functions) and of `facts`
    (name -> JSON-able data). See the module docstring for what is followed. `unused`: modules the run never
    executes although code it shares names them (DGCNN's runs and the network's accelerator)."""
    out: dict[str, str] = {}
    todo = list(roots)
    while todo:
        obj = todo.pop()
        obj = getattr(obj, "__func__", obj)         # a bound or class method: its function
        if not (inspect.isclass(obj) or inspect.isfunction(obj)) or not _is_user_module(obj.__module__) \
                or obj.__module__ in unused:
            continue
        name = _name(obj)
        if name in out:
            continue
        parts = []
        if inspect.isclass(obj):
            parts.append("bases " + ", ".join(f"{b.__module__}.{b.__qualname__}" for b in obj.__bases__))
            parts += _class_values(obj)
            todo += obj.__bases__
        for function in _functions(obj):
            parts.append(_source_digest(function))
            scope = function.__globals__
            for code in _code_objects(function.__code__):
                for used in code.co_names:
                    target = scope.get(used)
                    if inspect.ismodule(target) and _is_user_module(target.__name__):
                        # module.attribute: the attribute names are among the same co_names
                        todo += [getattr(target, a) for a in code.co_names
                                 if getattr(getattr(target, a, None), "__module__", None) == target.__name__]
                    elif target is not None:
                        todo.append(target)
        out[name] = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    for name, value in (facts or {}).items():
        out[name] = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
    return dict(sorted(out.items()))


def changes(made, now: dict) -> str | None:
    """What differs between a recorded code identity and today's, in a few words; None if nothing does.
    `made` None or not a mapping: recorded by an earlier version (one that did not record its code)."""
    if not isinstance(made, dict):
        return "an earlier version that did not record its code"
    changed = sorted(k for k in set(made) | set(now) if made.get(k) != now.get(k))
    if not changed:
        return None
    if not set(made) & set(now):
        return "an earlier version that recorded its code by file: " + ", ".join(map(str, list(made)[:5]))
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return f"{shown} changed since"
