"""Shared plumbing: the INI config, user-facing errors, atomic file writes, seeding.

The INI file is parsed once, by `load_config(path)`, into frozen dataclasses. Every key has a
type and a check; a key the dataclass does not know, a missing required key or a bad value
raises `ConfigError` naming the file, section and key. Nothing else reads the INI file.

    cfg = load_config("SEED.ini")
    cfg.model.depth_spec   # 16
    cfg.to_dict()          # the resolved config, as saved next to results and checkpoints

Errors a user can cause (bad path, bad file, bad INI value) are `UserError`s: the command-line
entry points catch them with `cli_main` and print one line, exit code 1, no traceback.
"""
from __future__ import annotations

import configparser
import ctypes
import ctypes.util
import dataclasses
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

if TYPE_CHECKING:
    import torch

# ----------------------------------------------------------------------------- errors


class UserError(Exception):
    """An error the user can fix (bad path, file or value); printed as one line, exit 1."""


class ConfigError(UserError):
    """A bad INI file, section, key or value."""


class DataError(UserError):
    """A dataset or preprocessed file that is missing or not what was expected."""


class OutputError(UserError):
    """An output folder or file that cannot be written (a file in the way, read-only, disk full)."""


def cli_main(main: Callable[[list[str] | None], Any]) -> None:
    """Run a command-line `main(argv)`; turn a UserError into one stderr line and exit 1."""
    try:
        code = main(None)
    except UserError as e:
        print("error: " + str(e).replace("\n", " "), file=sys.stderr)  # one line, whatever the message holds
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    sys.exit(int(code or 0))


# ----------------------------------------------------------------------------- config

def _key(default: Any = dataclasses.MISSING, *, choices: tuple = (), check: Callable[[Any], bool] | None = None,
         expect: str = "", doc: str = "") -> Any:
    """A config key: its default (none = required), allowed choices or a check, and a doc line."""
    meta = {"choices": choices, "check": check, "expect": expect, "doc": doc}
    return field(default=default, metadata=meta)


def _positive(x) -> bool:
    return x > 0


DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")   # [training] device, bench --device


def _non_negative(x) -> bool:
    return x >= 0


@dataclass(frozen=True, kw_only=True)
class PathConfig:
    dataset_root: Path = _key(doc="folder holding the dataset as distributed (see README)")
    preprocessed_root: Path = _key(doc="where Preprocess.py writes maps; run.py reads them")
    result_path: Path = _key(doc="where run.py writes results, checkpoints and figures")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    dataset: str = _key(choices=("SEED", "SEED-IV"))
    feature: str = _key("de_LDS", choices=("de_LDS", "de_movingAve", "de_raw"),
                        doc="de_raw: DE computed from raw EEG (needs the raw EEG folder)")
    input_width: int = _key(check=_positive, expect="a positive integer")
    specInput_length: int = _key(check=_positive, expect="a positive integer")
    temInput_length: int = _key(check=_positive, expect="a positive integer")
    temporal_window_s: float = _key(0.2, check=_positive, expect="a positive number of seconds",
                                    doc="raw EEG segment per sample, resampled to temInput_length points")
    temporal_offset_s: float = _key(0.0, check=_non_negative, expect="a number of seconds >= 0",
                                    doc="start of the segment after the start of its DE window")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    depth_spec: int = _key(check=_positive, expect="a positive integer of the form 3N+4")
    depth_tem: int = _key(check=_positive, expect="a positive integer of the form 3N+4")
    nb_dense_block: int = _key(check=_positive, expect="a positive integer")
    gr_spec: int = _key(check=_positive, expect="a positive integer")
    gr_tem: int = _key(check=_positive, expect="a positive integer")
    nb_class: int = _key(check=_positive, expect="a positive integer")
    block_order: str = _key("paper", choices=("paper", "official"))
    attention: str = _key("both", choices=("both", "spatial", "spectral_temporal", "none"))
    attention_activation: str = _key("sigmoid", choices=("sigmoid", "softmax"))
    streams: str = _key("both", choices=("both", "spectral", "temporal"))
    dropout: float = _key(0.5, check=lambda x: 0 <= x < 1, expect="a number in [0, 1)")
    compression_spec: float = _key(0.5, check=lambda x: 0 < x <= 1, expect="a number in (0, 1]")
    compression_tem: float = _key(1.0, check=lambda x: 0 < x <= 1, expect="a number in (0, 1]")
    bn_momentum: float = _key(0.01, check=lambda x: 0 < x <= 1, expect="a number in (0, 1]",
                              doc="PyTorch convention: Keras momentum 0.99 (authors' code) is 0.01")


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    nbEpoch: int = _key(check=_positive, expect="a positive integer")
    batch_size: int = _key(check=_positive, expect="a positive integer")
    lr: float = _key(check=_positive, expect="a positive number")
    protocol: str = _key("trial", choices=("trial", "paper", "random", "loso"))
    patience: int = _key(20, check=_positive, expect="a positive integer")
    seed: int = _key(42, check=lambda x: 0 <= x < 2**32, expect="an integer in [0, 2**32 - 1]",
                     doc="NumPy's generator takes 32-bit seeds")
    device: str = _key("auto", check=lambda s: DEVICE_NAME.fullmatch(s) is not None,
                       expect="auto, cpu, cuda or cuda:N")
    l2: float = _key(1e-4, check=_non_negative, expect="a number >= 0",
                     doc="Keras l2(1e-4) on stem, bottleneck and transition convs")
    normalization: str = _key("electrode", choices=("electrode", "none"))
    val_trials_per_class: int = _key(1, check=_non_negative, expect="an integer >= 0")
    random_test_fraction: float = _key(0.4, check=lambda x: 0 < x < 1, expect="a number in (0, 1)",
                                       doc="protocol random: share of windows tested (authors' test_split_ratio)")
    val_fraction: float = _key(0.1, check=lambda x: 0 <= x < 1, expect="a number in [0, 1)",
                               doc="protocol random: share of training windows used for validation")
    amp: bool = _key(True, doc="bf16 autocast on CUDA (ignored on CPU)")
    num_threads: int = _key(0, check=_non_negative, expect="an integer >= 0 (0: torch's default)")


SECTIONS = {"path": PathConfig, "data": DataConfig, "model": ModelConfig, "training": TrainingConfig}


@dataclass(frozen=True, kw_only=True)
class Config:
    path: PathConfig
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig
    source: Path | None = None  # the INI file it came from

    def to_dict(self) -> dict:
        """The resolved config as plain JSON-able data (paths as strings)."""
        out = {}
        for name in SECTIONS:
            out[name] = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(getattr(self, name)).items()}
        return out

    @classmethod
    def from_dict(cls, d: dict, source: Path | None = None) -> "Config":
        """Rebuild a Config from `to_dict()` output (as stored in checkpoints and summary.json)."""
        sections = {}
        for name, section_cls in SECTIONS.items():
            values = dict(d[name])
            if name == "path":
                values = {k: Path(v) for k, v in values.items()}
            sections[name] = section_cls(**values)
        return cls(**sections, source=source)

    def replace(self, **sections: dict) -> "Config":
        """A copy with some keys changed, e.g. cfg.replace(training={"nbEpoch": 2}); values are checked."""
        new = {}
        for name, cls in SECTIONS.items():
            values = dataclasses.asdict(getattr(self, name))
            for k, v in sections.get(name, {}).items():
                if k not in values:
                    raise ConfigError(f"unknown key [{name}] {k}")
                values[k] = v
            for f in fields(cls):
                _check_value(f, values[f.name], name, str(self.source or "<config>"))
            new[name] = cls(**values)
        return Config(**new, source=self.source)


def _parse_value(f: dataclasses.Field, raw: str, where: str) -> Any:
    typ = f.type if isinstance(f.type, str) else f.type.__name__
    raw = raw.strip()
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
        return raw
    except ValueError:
        kind = {"int": "an integer", "float": "a number", "bool": "true or false", "Path": "a path"}.get(typ, typ)
        raise ConfigError(f"{where}: expected {kind}, got {raw!r}") from None


def _check_value(f: dataclasses.Field, value: Any, section: str, source: str) -> None:
    where = f"{source}: [{section}] {f.name}"
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{where}: expected one of {', '.join(meta['choices'])}, got {value!r}")
    if isinstance(value, float) and not np.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if meta.get("check") and not meta["check"](value):
        raise ConfigError(f"{where}: expected {meta['expect']}, got {value!r}")


def load_config(path: str | os.PathLike) -> Config:
    """Parse an INI file into a Config. Relative paths in [path] are relative to the INI file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)
    parser.optionxform = str  # keep the authors' camelCase keys (nbEpoch, specInput_length)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a readable INI file ({str(e).splitlines()[0]})") from None
    unknown = [s for s in parser.sections() if s not in SECTIONS]
    if unknown:
        raise ConfigError(f"{path}: unknown section [{unknown[0]}]; expected {', '.join(f'[{s}]' for s in SECTIONS)}")
    sections = {}
    for name, cls in SECTIONS.items():
        if not parser.has_section(name):
            raise ConfigError(f"{path}: missing section [{name}]")
        known = {f.name: f for f in fields(cls)}
        for key in parser[name]:
            if key not in known:
                raise ConfigError(f"{path}: [{name}] {key}: unknown key; known keys: {', '.join(known)}")
        values = {}
        for key, f in known.items():
            if key in parser[name]:
                values[key] = _parse_value(f, parser[name][key], f"{path}: [{name}] {key}")
            elif f.default is dataclasses.MISSING:
                raise ConfigError(f"{path}: [{name}] {key}: missing required key")
            else:
                values[key] = f.default
            if name == "path":   # ~ is the user's home; other relative paths start at the INI file's folder
                try:
                    values[key] = values[key].expanduser()
                except RuntimeError:    # ~user unknown, or no home directory
                    raise ConfigError(f"{path}: [path] {key}: cannot expand {str(values[key])!r} "
                                      f"(unknown user or no home directory)") from None
                values[key] = values[key] if values[key].is_absolute() else (path.parent / values[key])
            _check_value(f, values[key], name, str(path))
        sections[name] = cls(**values)
    cfg = Config(**sections, source=path)
    from datasets import N_CLASSES  # here, not at the top: datasets.py imports utils

    expected = N_CLASSES[cfg.data.dataset]
    if cfg.model.nb_class != expected:
        raise ConfigError(f"{path}: [model] nb_class: {cfg.data.dataset} has {expected} classes, got {cfg.model.nb_class}")
    return cfg


# ----------------------------------------------------------------------------- atomic files


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once, restored at once
_HOST = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname())
_TEMPORARY = re.compile(r"^\..+~(?P<pid>\d+)-(?P<host>[A-Za-z0-9_-]*)~\w+\.tmp$")  # .<name>~<pid>-<host>~<random>.tmp


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it onto `path`, else delete it.

    A reader never sees a half-written file: either the old one, or the complete new one. The
    temporary file is named `.<name>~<pid>-<host>~<random>.tmp`; one left behind by a killed
    process is removed by `remove_stale_temporaries`. A write that fails (a file where a folder
    should be, permissions, disk full) raises OutputError naming `path`.
    """
    path = Path(path)
    make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}~{os.getpid()}-{_HOST}~", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes owner-only files; outputs get the usual permissions
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)


def make_folder(path: str | os.PathLike) -> Path:
    """mkdir -p; OutputError naming the folder if it cannot be made (e.g. a file is in the way)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: cannot create the folder ({e.strerror or e})") from None
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files of `atomic_path` in `folder` left by killed processes; returns how many.

    Only files written on this host by a process that no longer exists are touched, so a process
    writing into the same folder at the same time (another --shard) keeps its files.
    """
    removed = 0
    for path in Path(folder).glob(".*.tmp") if Path(folder).is_dir() else ():
        match = _TEMPORARY.match(path.name)
        if match and match["host"] == _HOST and not _process_exists(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only the existence check is made
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:  # not a process id at all
        return False
    return True


def check_output_folder(path: str | os.PathLike, where: str) -> None:
    """Fail early, creating nothing, if `path` cannot become a writable folder.

    Checks `path` or, while it does not exist, its nearest existing parent: that must be a folder
    this process may write into. `where` names the INI key in the message. Later failures (disk
    full) still surface as OutputError from atomic_path.
    """
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{where}: cannot write to {path} ({existing} is a file, not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{where}: cannot write to {path} ({existing} is not writable)")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (indent 2, NumPy scalars and Paths converted)."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=default) + "\n", encoding="utf-8")


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """np.save atomically (the file can be opened later with mmap_mode='r')."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


# ----------------------------------------------------------------------------- misc


def int_list(text: str) -> list[int]:
    """'1,2,10' -> [1, 2, 10] for --subjects / --sessions. A UserError, not argparse's ValueError,
    so a bad value ends as one `error:` line with exit code 1 like every other user error."""
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UserError(f"expected comma-separated integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise UserError(f"expected comma-separated positive integers, got {text!r}")
    return values


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (CPU and CUDA)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str, where: str = "[training] device") -> "torch.device":
    """'auto' -> CUDA when available, else CPU; an explicit CUDA device must exist (ConfigError naming `where`)."""
    import torch

    if not DEVICE_NAME.fullmatch(name):
        raise ConfigError(f"{where}: expected auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            found = f"{count} CUDA device(s) (cuda:0 .. cuda:{count - 1})" if count else "no CUDA device"
            raise ConfigError(f"{where}: {name!r} asked for, but this machine has {found} (use auto or cpu)")
    return torch.device(name)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse: True if set, False without glibc's mallopt.

    By default glibc maps large blocks afresh (mmap; from 128 KiB, a threshold that rises with use
    up to 32 MiB) and gives them back when they are freed (munmap), and trims freed memory at the
    top of its heap; a training step's activations are freed every step, so they are page-faulted
    in again every step (on this project's 2-core VM, SEED.ini, batch 64: 24,000-34,000 faults,
    93-134 MiB, 6-19% of the step time; README: Speed). With M_MMAP_MAX = 0 every block comes from
    the heap, and with M_TRIM_THRESHOLD at its maximum freed memory stays in the process: the next
    step reuses it. The price: the process keeps its peak memory until it exits. Process-wide;
    run.py calls it when it trains on the CPU, bench/train.py on request.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return bool(libc.mallopt(-4, 0)) and bool(libc.mallopt(-1, 2 ** 31 - 1))   # -4 M_MMAP_MAX, -1 M_TRIM_THRESHOLD
    except (OSError, AttributeError, TypeError):
        return False


def git_commit() -> str | None:
    """The code's git commit (with '+dirty' if the tree has changes), or None outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")
