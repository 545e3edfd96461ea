"""The INI file: its schema (frozen dataclasses, one per section), the parser, --set overrides.

The INI file is parsed once, by `load_config(path)`, into frozen dataclasses. Every key has a
type and a check; a key the dataclass does not know, a missing required key or a bad value
raises `ConfigError` naming the file, section and key. Nothing else reads the INI file.

    cfg = load_config("SEED.ini")
    cfg.model.depth_spec   # 16
    cfg.to_dict()          # the resolved config, as saved next to results and checkpoints
    cfg = load_config("SEED.ini", ["training.nbEpoch=5"])   # --set training.nbEpoch=5 (add_set_argument)
    cfg = load_config("SEED.ini", sections=("model",))      # [model] and the input sizes only (model.py)

The INI syntax, as read here:
  * Comments: `;` or `#` starts a comment when it begins a line (after any indentation) or follows
    a space or tab; anywhere else it is part of the value. `result_path = /x/results#2` keeps `#2`,
    `result_path = /x/results #2` is `/x/results` and a comment, so no value can hold ` #` or ` ;`.
    Text is never cut otherwise: a value in quotes or continued on an indented line is an error
    (quotes would be kept, and do not protect ` #`), and so is a --set value holding ` #` or ` ;`.
  * Keys are case-sensitive (the authors' camelCase: nbEpoch); a key that differs from a known one
    only in case, or is spelled close to it, gets "did you mean ...?".
  * UTF-8, with or without a byte-order mark; no [DEFAULT] section and no %-interpolation.
  * The authors' own INI (config/SEED.ini of their Keras release) is read too: its input sizes
    (input_width, specInput_length, temInput_length) may stay in [model]; its [path] keys are
    reported with what this project uses instead. Layout problems (unknown sections, unknown and
    missing keys) are reported all at once, in one message.
"""
from __future__ import annotations

import configparser
import dataclasses
import difflib
import hashlib
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from sst.data import datasets
from sst.errors import ConfigError
from sst.fileio import check_path
from sst.training import protocols

if TYPE_CHECKING:
    import argparse

def _key(default: Any = dataclasses.MISSING, *, choices: tuple | dict = (), check: Callable[[Any], bool] | None = None,
         expect: str = "", doc: str = "", at_most: int | None = None) -> Any:
    """A config key: its default (none = required), allowed choices or a check, its upper bound (an integer key:
    every one has one, so that a typo such as 100000000000000000000 is one line, not a plan held in memory or
    an overflow inside torch), and a doc line."""
    meta = {"choices": choices, "check": check, "expect": expect, "doc": doc, "at_most": at_most}
    return field(default=default, metadata=meta)


def _positive(x) -> bool:
    return x > 0


def _non_negative(x) -> bool:
    return x >= 0


INT_CEILING = 2**31 - 1     # an integer key without a bound of its own: what torch's int32 arguments take
EPOCHS = 100_000            # nbEpoch, patience, lr_step_epochs: the paper trains 100 (SEED.ini)

DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")   # [training] device, bench --device


@dataclass(frozen=True, kw_only=True)
class PathConfig:
    dataset_root: Path = _key(doc="folder holding the dataset as distributed (see README)")
    preprocessed_root: Path = _key(doc="where Preprocess.py writes maps; run.py reads them")
    result_path: Path = _key(doc="where run.py writes results, checkpoints and figures")


@dataclass(frozen=True, kw_only=True)
class InputSizes:
    """The network's input sizes: [data] keys in this project's INI files, [model] keys in the authors'
    (both places are accepted). All of [data] when the whole file is loaded; alone in `Config.data`
    when only [model] is (`load_config(path, sections=("model",))`, what `python model.py` needs)."""
    input_width: int = _key(check=_positive, expect="a positive integer", at_most=4096)
    specInput_length: int = _key(check=_positive, expect="a positive integer", at_most=10_000)
    temInput_length: int = _key(check=_positive, expect="a positive integer", at_most=100_000)


@dataclass(frozen=True, kw_only=True)
class DataConfig(InputSizes):
    dataset: str = _key(choices=datasets.DATASETS, doc="an entry of sst/data/datasets.py")
    feature: str = _key("de_LDS", choices=("de_LDS", "de_movingAve", "de_raw"),
                        doc="de_raw: DE computed from raw EEG (needs the raw EEG folder)")
    temporal_window_s: float = _key(0.2, check=_positive, expect="a positive number of seconds",
                                    doc="raw EEG segment per sample, resampled to temInput_length points")
    temporal_offset_s: float = _key(0.0, check=_non_negative, expect="a number of seconds >= 0",
                                    doc="start of the segment after the start of its DE window")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which model makes the runs (`name`), SSTEmotionNet's keyword arguments (model.build_model passes them
    on) and the plugins that register variants. Only types are checked here: the network checks its own
    arguments (model.ModelArgumentError, reported by build_model with the file, section and key). Defaults
    are the network's (a test holds them equal)."""
    name: str = _key("sst_emotionnet", doc="a model kind of sst/models/kinds.py: the network, DGCNN (dgcnn) or a "
                                           "classical baseline on the flattened DE features (linear_svm, "
                                           "logistic_regression)")
    depth_spec: int = _key(doc="of the form 3N+4: (depth - 4) / 3 / 2 layers per dense block", at_most=1000)
    depth_tem: int = _key(at_most=1000)
    nb_dense_block: int = _key(at_most=16)
    gr_spec: int = _key(doc="growth rate k of the spatial-spectral stream", at_most=1024)
    gr_tem: int = _key(at_most=1024)
    nb_class: int = _key(at_most=1000)
    block_order: str = _key("paper", doc="paper (figure 3) | official (the authors' code)")
    attention: str = _key("both", doc="both | spatial | spectral_temporal | none: the A3DB parts kept")
    attention_activation: str = _key("sigmoid", doc="sigmoid (authors' code) | softmax (paper's figure 5)")
    attention_block: str = _key("a3db", doc="a registered attention class (model.register_attention)")
    streams: str = _key("both", doc="both | spectral | temporal, or a comma list of registered stream names")
    dropout: float = _key(0.5)
    compression_spec: float = _key(0.5)
    compression_tem: float = _key(1.0)
    bn_momentum: float = _key(0.01, doc="PyTorch convention: Keras momentum 0.99 (authors' code) is 0.01")
    plugins: tuple = _key((), doc="Python files imported before the network is built (comma list; relative "
                                  "to the INI file's folder and inside it, or to the current folder with --set)")
    # DGCNN's keys ([model] name = dgcnn; sst/models/dgcnn.py), its dropout and nb_class are the keys above
    dgcnn_form: str = _key("paper", choices=("paper", "public"),
                           doc="paper: Chebyshev filters on the normalised Laplacian (Song et al.); public: TorchEEG's")
    dgcnn_order: int = _key(2, check=_positive, expect="a positive integer", at_most=62,
                            doc="K, the Chebyshev terms (LibEER: 2)")
    dgcnn_filters: int = _key(64, check=_positive, expect="a positive integer",
                              at_most=4096, doc="graph filters per electrode (LibEER, SEED and SEED-IV: 64)")
    dgcnn_hidden: int = _key(64, check=_positive, expect="a positive integer",
                             doc="the public form's hidden layer (TorchEEG: 64)", at_most=4096)


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    nbEpoch: int = _key(check=_positive, expect="a positive integer", at_most=EPOCHS)
    batch_size: int = _key(check=_positive, expect="a positive integer", at_most=2**20)
    lr: float = _key(check=_positive, expect="a positive number")
    protocol: str = _key("trial", choices=protocols.PROTOCOLS, doc="an entry of sst/training/protocols.py")
    patience: int = _key(20, check=_positive, expect="a positive integer", at_most=EPOCHS)
    seed: int = _key(42, check=lambda x: 0 <= x < 2**32, expect="an integer in [0, 2**32 - 1]", at_most=2**32 - 1,
                     doc="NumPy's generator takes 32-bit seeds")
    device: str = _key("auto", check=lambda s: DEVICE_NAME.fullmatch(s) is not None,
                       expect="auto, cpu, cuda or cuda:N")
    l2: float = _key(1e-4, check=_non_negative, expect="a number >= 0",
                     doc="Keras l2(1e-4) on stem, bottleneck and transition convs")
    normalization: str = _key("electrode", choices=("electrode", "none"))
    val_trials_per_class: int = _key(1, check=_non_negative, expect="an integer >= 0", at_most=1000)
    random_test_fraction: float = _key(0.4, check=lambda x: 0 < x < 1, expect="a number in (0, 1)",
                                       doc="protocol random: share of windows tested (authors' test_split_ratio)")
    val_fraction: float = _key(0.1, check=lambda x: 0 <= x < 1, expect="a number in [0, 1)",
                               doc="protocol random: share of training windows used for validation")
    amp: bool = _key(True, doc="bf16 autocast on CUDA (ignored on CPU)")
    accelerator: str = _key("auto", choices=("auto", "off"),
                            doc="auto: CPU training through fastcpu.py while it matches model.py; off: the definition")
    num_threads: int = _key(0, check=_non_negative, expect="an integer >= 0 (0: torch's default)", at_most=1024)
    compile: str = _key("auto", choices=("off", "on", "auto"),
                        doc="on: full batches through torch.compile (CUDA graphs on CUDA), partial ones eagerly; auto: on "
                            "where bench/gpu.sh measured it faster (sst/training/graphed.py); off: eager")
    state_save: str = _key("background", choices=("background", "sync"),
                           doc="background: each epoch's resumable state copied, then written while the next epoch "
                               "trains; sync: written before it starts")
    repeats: int = _key(1, check=_positive, expect="a positive integer",
                        at_most=1000, doc="each run trained this many times, with seeds seed, seed + 1, ... "
                                          "(runs <run>_rep1, ...)")
    train_trials: int = _key(0, check=_non_negative, expect="an integer >= 0 (0: the dataset's standard split)",
                             doc="trials 1..N of a session train (with validation), the rest test; 0: the dataset "
                                 "entry's n_train_trials (SEED 9 of 15, SEED-IV 16 of 24)", at_most=1000)
    optimizer: str = _key("adam", choices=("adam", "adamw", "sgd"),
                          doc="adam: the authors' (L2 as coupled weight decay 2 l2 on their kernels); adamw: the same "
                              "decay decoupled; sgd: with [training] momentum")
    momentum: float = _key(0.9, check=lambda x: 0 <= x < 1, expect="a number in [0, 1)", doc="sgd's momentum")
    lr_schedule: str = _key("none", choices=("none", "step", "cosine"),
                            doc="none: lr throughout; step: times lr_gamma every lr_step_epochs; cosine: to 0 over nbEpoch")
    lr_step_epochs: int = _key(10, check=_positive, expect="a positive integer", at_most=EPOCHS,
                               doc="step: epochs between steps")
    lr_gamma: float = _key(0.1, check=lambda x: 0 < x <= 1, expect="a number in (0, 1]", doc="step: the factor")


SECTIONS = {"path": PathConfig, "data": DataConfig, "model": ModelConfig, "training": TrainingConfig}
INPUT_KEYS = tuple(f.name for f in fields(InputSizes))  # [data] keys that may stand in [model] (the authors' INI)
# The session arrays a model reads ("de": DE features, "eeg": raw segments) and the [data] key of their depth.
SOURCE_LENGTHS = {"de": "specInput_length", "eeg": "temInput_length"}

# The authors' Keras config/SEED.ini [path] keys, and what this project has instead.
AUTHORS_PATH_KEYS = {
    **dict.fromkeys([f"{split}_{kind}_root_path" for split in ("train", "test")
                     for kind in ("specInput", "tempInput", "label")],
                    "the authors' Keras inputs, split in advance; here Preprocess.py writes maps from dataset_root "
                    "to preprocessed_root and run.py splits them by [training] protocol"),
    "model_save_path": "the authors' Keras model folder; here checkpoints go under result_path",
}


@dataclass(frozen=True, kw_only=True)
class Config:
    """The resolved INI file. A section left out of `load_config(..., sections=...)` is None, except
    that `data` then still holds the input sizes (InputSizes) when [model] was read."""
    path: PathConfig | None
    data: DataConfig | InputSizes | None
    model: ModelConfig | None
    training: TrainingConfig | None
    source: Path | None = None  # the INI file it came from
    overrides: tuple[str, ...] = ()  # the --set SECTION.KEY=VALUE applied, in order (not in to_dict())

    def to_dict(self) -> dict:
        """The resolved config as plain JSON-able data (paths as strings, [path] made absolute), one dict per
        section read.

        Only resolved values: `overrides` is left out, so a fingerprint of this dict (run.py's result
        key) is the same whether a value came from the INI file or from --set. Record it beside."""
        out = {}
        for name in SECTIONS:
            if (section := getattr(self, name)) is not None:
                out[name] = {k: _plain(v) for k, v in dataclasses.asdict(section).items()}
        if "path" in out:   # absolute: a checkpoint's config finds its data from any working folder (a notebook's)
            out["path"] = {k: os.path.abspath(v) for k, v in out["path"].items()}
        return out

    @classmethod
    def from_dict(cls, d: dict, source: Path | None = None) -> "Config":
        """Rebuild a Config from `to_dict()` output (as stored in checkpoints and summary.json)."""
        sections = {}
        for name, section_cls in SECTIONS.items():
            values = dict(d[name])
            if name == "path":
                values = {k: Path(v) for k, v in values.items()}
            if "plugins" in values:
                values["plugins"] = tuple(Path(p) for p in values["plugins"])
            sections[name] = section_cls(**values)
        return cls(**sections, source=source)

    def _override(self, section: str, keys: tuple[str, ...]) -> tuple[str, str] | None:
        """(the last --set text that set one of `keys` of `section`, the section it named), or None."""
        for text in reversed(self.overrides):
            name, _, rest = text.partition(".")
            key = rest.partition("=")[0]
            if key in keys and (name == section or key in INPUT_KEYS and name in ("data", "model")):
                return text, name
        return None

    def where(self, section: str, key: str) -> str:
        """Where a key's value came from, to start an error message: `--set SECTION.KEY=VALUE: [section] key`
        when an override set it (the last one), else `<INI file>: [section] key`."""
        found = self._override(section, (key,))
        return f"--set {found[0]}: [{found[1]}] {key}" if found else f"{self.source or '<config>'}: [{section}] {key}"

    def origin(self, section: str, *keys: str) -> str:
        """Where a check of several keys together should point: the last `--set ...` that set one of
        them, else the INI file (the message then names the section and keys itself)."""
        found = self._override(section, keys)
        return f"--set {found[0]}" if found else str(self.source or "<config>")

    def replace(self, **sections: dict) -> "Config":
        """A copy with some keys changed, e.g. cfg.replace(training={"nbEpoch": 2}); values are checked."""
        new = {}
        for name in SECTIONS:
            current, changes = getattr(self, name), sections.get(name, {})
            if current is None:
                if changes:
                    raise ConfigError(f"[{name}] was not read from {self.source or 'the config'}")
                new[name] = None
                continue
            values = dataclasses.asdict(current)
            for k, v in changes.items():
                if k not in values:
                    raise ConfigError(f"unknown key [{name}] {k}")
                values[k] = v
            for f in fields(current):
                _check_value(f, values[f.name], f"{self.source or '<config>'}: [{name}] {f.name}")
            new[name] = type(current)(**values)
        return Config(**new, source=self.source, overrides=self.overrides)


def _plain(value: Any) -> Any:
    """A config value as JSON-able data: paths as strings, tuples of paths as lists of strings."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _plugin_paths(value: tuple, ini: Path, from_file: bool, where: str) -> tuple:
    """[model] plugins as absolute paths. From the INI file: relative to its folder and inside it (an INI
    file received from someone names no code elsewhere); from --set: relative to the current folder."""
    out = []
    for p in value:
        p = p.expanduser() if not from_file else p
        absolute = (ini.parent / p if from_file else Path.cwd() / p).resolve()
        check_path(absolute, where, ConfigError)
        if from_file and not absolute.is_relative_to(ini.parent.resolve()):
            raise ConfigError(f"{where}: {p} is outside the INI file's folder {ini.parent}; keep plugins beside "
                              f"the INI file, or name this one with --set model.plugins=...")
        if absolute.suffix != ".py":
            raise ConfigError(f"{where}: expected Python files (.py), got {p}")
        out.append(absolute)
    return tuple(out)


# Where a comment starts in a line of the INI file: at `;` or `#` that begins the line or follows
# whitespace. Elsewhere the two characters belong to the value (results#2, a;b).
COMMENT = re.compile(r"(?:^|\s)[;#]")


def _parse_value(f: dataclasses.Field, raw: str, where: str) -> Any:
    typ = f.type if isinstance(f.type, str) else f.type.__name__
    raw = raw.strip()
    if "\n" in raw:
        raise ConfigError(f"{where}: expected one line, got {raw!r} (an indented line continues the value above it)")
    if raw.startswith(('"', "'")):  # quotes would be kept, and they do not protect ' #' or ' ;' from starting a comment
        raise ConfigError(f"{where}: expected a value without quotes, got {raw!r} (quotes would be kept in the value, "
                          f"and ' #' or ' ;' starts a comment even between them)")
    try:
        if typ == "int":
            return int(raw)
        if typ == "float":
            return float(raw)
        if typ == "bool":
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if typ == "Path":
            if not raw:
                raise ValueError(raw)
            return Path(raw)
        if typ == "tuple":      # a comma list of paths (plugins); empty: none
            parts = [p.strip() for p in raw.split(",")]
            if raw and not all(parts):
                raise ValueError(raw)
            return tuple(Path(p) for p in parts if p)
        return raw
    except ValueError:
        kind = {"int": "an integer", "float": "a number", "bool": "true or false", "Path": "a path",
                "tuple": "a comma list of paths"}.get(typ, typ)
        raise ConfigError(f"{where}: expected {kind}, got {raw!r}") from None


def _check_value(f: dataclasses.Field, value: Any, where: str) -> None:
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{where}: expected one of {', '.join(meta['choices'])}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if meta.get("check") and not meta["check"](value):
        raise ConfigError(f"{where}: expected {meta['expect']}, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and value > (meta.get("at_most") or INT_CEILING):
        raise ConfigError(f"{where}: expected at most {meta.get('at_most') or INT_CEILING}, got {value!r}")


def _known_keys(section: str) -> list[str]:
    """The keys a section may hold: its own, and in [model] also the input sizes (the authors' place)."""
    return [f.name for f in fields(SECTIONS[section])] + (list(INPUT_KEYS) if section == "model" else [])


def _did_you_mean(name: str, known: list[str]) -> str | None:
    """The known name that `name` differs from only in case (NBEPOCH), else one close in spelling (nbEpochs)."""
    lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.8)
    match = name.lower() if name.lower() in lower else next(iter(close), None)
    return lower[match] if match else None


def _unknown_section(name: str) -> str:
    guess = _did_you_mean(name, list(SECTIONS))
    hint = f"did you mean [{guess}]?" if guess else "expected " + ", ".join(f"[{s}]" for s in SECTIONS)
    return f"unknown section [{name}] ({hint})"


def _unknown_keys(section: str, keys: list[str]) -> list[str]:
    """One problem per hint for a section's unknown keys: keys that share a hint are named together."""
    known = _known_keys(section)
    groups: dict[str, list[str]] = {}
    for key in keys:
        guess = _did_you_mean(key, known)
        if section == "path" and key in AUTHORS_PATH_KEYS:
            hint = AUTHORS_PATH_KEYS[key]
        elif guess:
            hint = f"did you mean {guess}?"
        else:
            hint = "known keys: " + ", ".join(known)
        groups.setdefault(hint, []).append(key)
    return [f"[{section}] {', '.join(group)}: unknown key{'s' * (len(group) > 1)} ({hint})"
            for hint, group in groups.items()]


@dataclass(frozen=True)
class _Override:
    text: str       # section.key=value, as recorded in Config.overrides
    section: str
    key: str
    value: str


def _parse_override(text: str) -> _Override:
    """One --set SECTION.KEY=VALUE; a ConfigError naming it if it is malformed or names no known key."""
    name, equals, value = text.partition("=")
    section, dot, key = (part.strip() for part in name.partition("."))
    if not (equals and dot and section and key):
        owners = [s for s in SECTIONS if name.strip() in _known_keys(s)] if equals and not dot else []
        hint = f"; did you mean {owners[0]}.{name.strip()}={value.strip()}?" if owners else ""
        raise ConfigError(f"--set {text}: expected SECTION.KEY=VALUE, e.g. training.nbEpoch=5{hint}")
    if section not in SECTIONS:
        raise ConfigError(f"--set {text}: {_unknown_section(section)}")
    if key not in _known_keys(section):
        raise ConfigError(f"--set {text}: {_unknown_keys(section, [key])[0]}")
    value = value.strip()
    if COMMENT.search(value):  # in the INI file the rest would be a comment: refused rather than cut or kept
        raise ConfigError(f"--set {text}: [{section}] {key}: expected no ';' or '#' at the start or after a space "
                          f"(in the INI file that would start a comment), got {value!r}")
    return _Override(f"{section}.{key}={value}", section, key, value)


def _read_ini(path: Path) -> dict[str, dict[str, str]]:
    """The INI file as {section: {key: raw value}}, comments removed (COMMENT); a ConfigError naming the
    file and the reason if it cannot be read or is not INI text."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark (Windows editors) is dropped
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:  # no permission, a folder, ...
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a readable INI file (not UTF-8 text: byte {e.object[e.start]:#04x} "
                          f"at offset {e.start})") from None
    # Comments are cut here, by one rule, instead of by configparser, whose inline comments can leave
    # comment text in a value (`a;b ; note # more` gives 'a;b ; note'). Cut lines stay, as blank lines,
    # so that configparser's line numbers are the file's.
    lines = [line[:m.start()] if (m := COMMENT.search(line)) else line for line in text.split("\n")]
    # No [DEFAULT] magic (its keys would appear in every section): it is an unknown section like any other.
    parser = configparser.ConfigParser(comment_prefixes=(), interpolation=None, default_section="\0")
    parser.optionxform = str  # keep the authors' camelCase keys (nbEpoch, specInput_length)
    try:
        parser.read_string("\n".join(lines), source=str(path))
    except configparser.Error as e:
        raise ConfigError(f"{path}: not a readable INI file ({' '.join(str(e).split())})") from None
    return {name: dict(parser[name]) for name in parser.sections()}


def load_config(path: str | os.PathLike, overrides: list[str] | None = None, *,
                sections: tuple[str, ...] = tuple(SECTIONS)) -> Config:
    """Parse an INI file into a Config, then apply `overrides` (--set SECTION.KEY=VALUE, in order).

    An override is checked as if its line stood in the file (same parsing, checks and messages, which
    name `--set SECTION.KEY=VALUE`) and may supply a key the file lacks; a later one of the same key
    wins. Relative paths in [path] start at the INI file's folder; relative paths given with --set at
    the current folder, as every path typed on a command line. The three input sizes may stand in
    [data] or in [model] (the authors' INI); given in both, they must agree.

    `sections`: the sections to read and check; the others are None in the Config and may be missing
    from the file or hold anything (the authors' [path] keys). Reading [model] reads the input sizes
    too: `load_config(path, sections=("model",))` is what building the network needs.

    The file's layout problems (unknown sections, unknown or missing keys) are reported all at once,
    in one ConfigError; a bad value stops at the first.
    """
    path = Path(path)
    if unknown := [s for s in sections if s not in SECTIONS]:
        raise ValueError(f"sections: {unknown} are not among {list(SECTIONS)}")
    wanted = [s for s in SECTIONS if s in sections]
    classes = {s: SECTIONS[s] for s in wanted}                # what is built, section by section
    if "model" in classes and "data" not in classes:
        classes = {**classes, "data": InputSizes}
    reads = {s: _known_keys(s) for s in wanted}               # section -> the keys read from it
    if "data" in classes:                                     # the input sizes, wherever they stand
        reads = {"data": list(INPUT_KEYS), "model": list(INPUT_KEYS), **reads}
    sets = [_parse_override(text) for text in overrides or ()]
    for o in sets:
        if o.key not in reads.get(o.section, ()):
            read = ", ".join(f"[{s}]" for s in wanted) + (" and the input sizes" if classes.get("data") is InputSizes else "")
            raise ConfigError(f"--set {o.text}: not used here: this command reads only {read}")
    ini = _read_ini(path)

    # raw[section][key] = (text, where it comes from for messages, whether from the file)
    raw = {s: {k: (v, f"{path}: [{s}] {k}", True) for k, v in ini.get(s, {}).items() if k in keys}
           for s, keys in reads.items()}
    for o in sets:
        for s in ("data", "model") if o.key in INPUT_KEYS else ():
            raw[s].pop(o.key, None)   # one key, whichever section names it
        raw[o.section][o.key] = (o.value, f"--set {o.text}: [{o.section}] {o.key}", False)

    problems = [_unknown_section(s) for s in ini if s not in SECTIONS]
    for name in [*wanted, *(["data"] if "data" in classes and "data" not in wanted else [])]:
        if name in wanted:
            problems += _unknown_keys(name, [k for k in ini.get(name, {}) if k not in reads[name]])
            missing = [f.name for f in fields(SECTIONS[name])
                       if f.default is dataclasses.MISSING and f.name not in INPUT_KEYS and f.name not in raw[name]]
            if name not in ini and not any(o.section == name for o in sets):
                required = f" (required keys: {', '.join(missing)})" if missing else ""
                problems.append(f"missing section [{name}]{required}")
            elif missing:
                problems.append(f"[{name}] {', '.join(missing)}: missing required key{'s' * (len(missing) > 1)}")
        if name == "data" and (lacking := [k for k in INPUT_KEYS if k not in raw["data"] and k not in raw["model"]]):
            problems.append(f"[data] {', '.join(lacking)}: missing required key{'s' * (len(lacking) > 1)} "
                            f"(in [data], or in [model] as in the authors' INI)")
    if problems:
        count = f"{len(problems)} problems: " if len(problems) > 1 else ""
        raise ConfigError(f"{path}: {count}{'; '.join(problems)}")

    built, wheres = {}, {}
    for name, cls in classes.items():
        values = {}
        for f in fields(cls):
            places = ("data", "model") if f.name in INPUT_KEYS else (name,)
            found = [(_parse_value(f, text, where), where, from_file)
                     for text, where, from_file in (raw[s][f.name] for s in places if f.name in raw[s])]
            if len(found) == 2 and found[0][0] != found[1][0]:
                raise ConfigError(f"{path}: [data] {f.name} = {found[0][0]} and [model] {f.name} = {found[1][0]}: "
                                  f"given in both sections with different values (keep one)")
            value, where, from_file = found[0] if found else (f.default, f"{path}: [{name}] {f.name}", True)
            if name == "path":   # ~ is the user's home; other relative paths start at the INI file's folder
                try:
                    value = value.expanduser()
                except RuntimeError:    # ~user unknown, or no home directory
                    raise ConfigError(f"{where}: cannot expand {str(value)!r} "
                                      f"(unknown user or no home directory)") from None
                if from_file and not value.is_absolute():
                    value = path.parent / value
                check_path(value, where, ConfigError)     # a name too long fails here, not in some later os call
            if name == "model" and f.name == "plugins":
                value = _plugin_paths(value, path, from_file, where)
            _check_value(f, value, where)
            values[f.name], wheres[f"{name}.{f.name}"] = value, where
        built[name] = cls(**values)
    cfg = Config(**{name: built.get(name) for name in SECTIONS}, source=path, overrides=tuple(o.text for o in sets))
    if isinstance(cfg.data, DataConfig) and cfg.model is not None:
        expected = datasets.get(cfg.data.dataset).n_classes
        if cfg.model.nb_class != expected:
            raise ConfigError(f"{wheres['model.nb_class']}: {cfg.data.dataset} has {expected} classes, "
                              f"got {cfg.model.nb_class}")
    return cfg


def add_set_argument(parser: "argparse.ArgumentParser") -> None:
    """Add the repeatable `--set SECTION.KEY=VALUE` flag (args.set: a list, or None); pass it to load_config."""
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="change one INI value without editing the file, e.g. --set training.nbEpoch=5 "
                             "(repeatable; checked like the file's values; a relative path is relative to the "
                             "current folder)")


def folder_name(overrides: list[str]) -> str:
    """A folder name for a set of --set overrides: sorted (the order they were given does not matter),
    unsafe characters replaced, and shortened with a digest when long."""
    name = re.sub(r"[^A-Za-z0-9_.=+,-]", "_", ",".join(sorted(overrides)))
    if len(name) > 100:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = f"{name[:80]}..{digest}"
    return name


def data_overrides(cfg: "Config") -> list[str]:
    """The --set values that change what Preprocess.py builds: data.*, and the input sizes given as
    model.* (which the authors' INI keeps in [model])."""
    return [o for o in cfg.overrides
            if o.startswith("data.") or o.startswith("model.") and o[len("model."):].partition("=")[0] in INPUT_KEYS]


def data_override_root(cfg: "Config") -> "Config":
    """cfg with [path] preprocessed_root moved to a subfolder named after its --set data.* overrides
    (data_overrides), so that trying a [data] setting never rebuilds the INI's own preprocessed sessions
    in place."""
    data = data_overrides(cfg)
    if not data or any(o.startswith("path.preprocessed_root=") for o in cfg.overrides):
        return cfg
    return cfg.replace(path={"preprocessed_root": cfg.path.preprocessed_root / folder_name(data)})


# ----------------------------------------------------------------------------- the network's arguments


def stream_names(streams: str) -> tuple[str, ...]:
    """[model] streams -> the stream names: both -> spectral, temporal; else one name or a comma list."""
    return ("spectral", "temporal") if streams.strip() == "both" else tuple(n.strip() for n in streams.split(","))


def model_arguments(cfg: Config) -> dict:
    """SSTEmotionNet's keyword arguments from [model] (plugins and the model's name aside) and the input sizes:
    the one mapping from INI keys to the network (model.build_model)."""
    arguments = {f.name: getattr(cfg.model, f.name) for f in fields(cfg.model)
                 if f.name not in ("plugins", "name") and not f.name.startswith("dgcnn_")}
    arguments.update({key: getattr(cfg.data, key) for key in INPUT_KEYS})
    if "," in cfg.model.streams:
        arguments["streams"] = stream_names(cfg.model.streams)
    return arguments


def dgcnn_arguments(cfg: Config) -> dict:
    """DGCNN's keyword arguments from [model] (dgcnn_*, nb_class, dropout) and the DE bands: the one mapping from
    INI keys to sst.models.dgcnn.DGCNN."""
    m = cfg.model
    return {"nb_class": m.nb_class, "n_bands": cfg.data.specInput_length, "order": m.dgcnn_order,
            "channels": m.dgcnn_filters, "hidden": m.dgcnn_hidden, "dropout": m.dropout, "form": m.dgcnn_form}


def model_error(cfg: Config, argument: str, detail: str) -> ConfigError:
    """The ConfigError for an impossible network argument, naming where its key came from."""
    section = "data" if argument in INPUT_KEYS else "model"
    hint = " (registered by a [model] plugins file?)" if argument in ("streams", "attention_block") else ""
    return ConfigError(f"{cfg.where(section, argument)}: {detail}{hint}")
