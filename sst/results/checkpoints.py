"""A finished run's checkpoint: read and checked, its network rebuilt, its inputs prepared as in training.

    trained = TrainedModel.load("results/SEED/checkpoints/sub01_ses1.pt")   # eval mode, on the CPU
    trained.probabilities(session)                        # (N, nb_class) for a preprocessed.Session
    label, weights = trained.attention_weights(sessions)  # A3DB weights per block, for figures
    trained.net, trained.cfg, trained.stats, trained.checkpoint["run"]

The one path from a checkpoint to outputs: run.py --predict and --explain, figures.py and the Python
API (results.load_trained, training.predict_probabilities) all go through TrainedModel (a classical
baseline's checkpoint loads as TrainedBaseline, with the same probabilities()). Inputs are
each stream's source array ("de" or "eeg", model.register_stream), z-scored with the run's training
statistics and mapped by inputs.MapBuilder, exactly as the Trainer feeds them.

A checkpoint is a file a user may have received, so loading it runs no code of its own: it is read
with torch.load(weights_only=True) (tensors, dicts, lists, strings, numbers; no other objects), and
its config may name [model] plugins that loading never imports: the variants it needs must be
registered already, e.g. by the plugins of the INI file given to run.py, or by model.load_plugins.
Checkpoints written by earlier versions hold their normalisation statistics as NumPy arrays, which
the safe loader refuses; convert them once (reading them runs no code either):

    python -m sst.results.checkpoints --convert results/SEED/checkpoints/*.pt
"""
from __future__ import annotations

import argparse
import errno
import pickle
import re
from pathlib import Path

import numpy as np
import torch

import model as model_lib
from sst import cli, fileio, schemas
from sst.config import Config
from sst.data import inputs
from sst.errors import DataError, UserError, printable

# What a checkpoint of an earlier version holds beyond what torch's safe loader takes: NumPy arrays
# (its normalisation statistics). `--convert` allows exactly these, and nothing that can run code.
NUMPY_ARRAY_GLOBALS = ("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
                       "numpy.ndarray", "numpy.dtype")
CONVERT = "python -m sst.results.checkpoints --convert"


class NotLoaded(Exception):
    """Why read_safely could not load a file: `kind` is "unreadable" (the file system refused: permissions,
    a folder), "earlier" (written by an earlier version: NumPy arrays), "unsafe" (objects whose loading
    would run code) or "damaged" (truncated, not a torch file); the message says what was found."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


def read_safely(path: str | Path) -> object:
    """torch.load(path, weights_only=True) on the CPU: tensors, dicts, lists, str, int, float, bool and None
    only, so that no code inside the file runs. NotLoaded says why a file was not loaded."""
    try:
        fh = open(path, "rb")
    except OSError as e:    # there, but not ours to read: not damage, and not to be redone or deleted
        raise NotLoaded("unreadable", e.strerror or str(e)) from None
    with fh:
        try:
            return torch.load(fh, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            unsafe = _unsafe_globals(path, e)
            if not unsafe:
                raise NotLoaded("damaged", _first_line(e)) from None
            shown = ", ".join(printable(g, 60) for g in unsafe[:3]) + (", ..." if len(unsafe) > 3 else "")
            kind = "earlier" if set(unsafe) <= set(NUMPY_ARRAY_GLOBALS) else "unsafe"
            raise NotLoaded(kind, shown) from None
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM, errno.EISDIR, errno.EIO):
                raise NotLoaded("unreadable", e.strerror or str(e)) from None
            raise NotLoaded("damaged", _first_line(e)) from None
        except Exception as e:      # truncated or not a torch file: fails anywhere inside torch's reader
            raise NotLoaded("damaged", _first_line(e)) from None


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {printable((str(e).splitlines() or [''])[0], 80)}"


def _unsafe_globals(path: str | Path, error: Exception) -> list[str]:
    """The Python objects a torch file names that the safe loader does not allow (read, never run); torch
    before 2.5 has no function for it, but names the first one in its error."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except AttributeError:
        return re.findall(r"Unsupported global: GLOBAL ([\w.]+)", str(error))[:1]
    except Exception:   # not a zip checkpoint at all, or damaged: nothing to name
        return []


def load_checkpoint(path: str | Path) -> dict:
    """A run's best checkpoint (model, config, run, subject, session, epoch, normalization), checked, read
    without running any code of its own (read_safely); UserError naming the file if it is missing,
    unreadable (permissions: never called damage), written by an earlier version, unsafe or damaged."""
    path = Path(path)
    try:
        path.stat()
    except FileNotFoundError:
        record = path.parent.parent / "runs" / f"{path.stem}.json"
        if record.is_file():
            raise UserError(f"{path}: checkpoint not found, although the run finished ({record}); it was "
                            f"deleted: delete {record.name} too and rerun run.py to redo the run") from None
        raise UserError(f"{path}: checkpoint not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the checkpoint ({e.strerror or e}); check its permissions") from None
    try:
        checkpoint = read_safely(path)
    except NotLoaded as e:
        if e.kind != "earlier":
            raise DataError(refusal(path, e, "the run")) from None
        checkpoint = read_earlier(path)     # its NumPy arrays, numbers only: as safe as the safe loader
    problem = schemas.check(checkpoint, schemas.CHECKPOINT)
    if problem:
        raise DataError(f"{path}: damaged checkpoint ({problem}); delete it and its runs/*.json to redo the run")
    return checkpoint


def refusal(path: Path, e: NotLoaded, redo: str) -> str:
    """The one line that says why a checkpoint or partial state was not loaded (NotLoaded) and what to do."""
    if e.kind == "unreadable":
        return f"{path}: cannot read the file ({e}); check its permissions (it is not damaged, nothing was changed)"
    if e.kind == "earlier":
        return (f"{path}: written by an earlier version of this project (NumPy arrays: {e}), which the safe loader "
                f"refuses; convert it with `{CONVERT} {path}` (runs no code), or delete it and its runs/*.json "
                f"to redo {redo}")
    if e.kind == "unsafe":
        return (f"{path}: holds objects whose loading would run code ({e}): not a file this project writes; "
                f"refused: a checkpoint holds tensors, numbers and text only")
    return f"{path}: not a readable checkpoint ({e}); delete it and its runs/*.json to redo {redo}"


def as_arrays(stats: dict) -> dict[str, np.ndarray]:
    """Normalisation statistics as NumPy arrays, whether stored as tensors (this version) or arrays."""
    return {k: v.numpy() if torch.is_tensor(v) else np.asarray(v) for k, v in stats.items()}


def as_tensors(stats: dict) -> dict[str, torch.Tensor]:
    """Normalisation statistics as CPU tensors, as checkpoints store them (the safe loader takes tensors)."""
    return {k: torch.as_tensor(np.asarray(v)) for k, v in stats.items()}


def _subsample(label: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `per_class` samples of each class (seeded: the same every call)."""
    rng = np.random.default_rng(seed)
    keep = [rng.choice(idx, per_class, replace=False) if len(idx) > per_class else idx
            for idx in (np.flatnonzero(label == c) for c in np.unique(label))]
    return np.sort(np.concatenate(keep))


class TrainedModel:
    """A trained network in eval mode with its Config and its training statistics (`stats`)."""

    def __init__(self, net: torch.nn.Module, cfg: Config, stats: dict, checkpoint: dict | None = None):
        self.net, self.cfg, self.stats = net.eval(), cfg, stats
        self.checkpoint = checkpoint or {}

    @classmethod
    def load(cls, path: str | Path) -> "TrainedModel":
        """The network of a run's best checkpoint (load_checkpoint), rebuilt from its config without
        importing any plugin it names; DataError naming the file if it does not build or load."""
        path = Path(path)
        checkpoint = load_checkpoint(path)
        try:
            cfg = Config.from_dict(checkpoint["config"])
        except (KeyError, TypeError, ValueError, UserError) as e:
            raise DataError(f"{path}: damaged checkpoint (its config or weights do not make a network: "
                            f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:80]})") from None
        if cfg.model.name != "sst_emotionnet":      # a classical baseline's linear map (baselines.py)
            return TrainedBaseline.from_checkpoint(path, cfg, checkpoint)
        try:
            net = model_lib.build_model(cfg, plugins=False)
        except UserError as e:
            plugins = ", ".join(p.name for p in cfg.model.plugins)
            hint = (f"; it was trained with [model] plugins {plugins}: name them in the INI file given with -c, "
                    f"or call model.load_plugins first") if plugins else ""
            raise DataError(f"{path}: its network cannot be built here ({e}){hint}") from None
        try:
            net.load_state_dict(checkpoint["model"])
        except (KeyError, TypeError, RuntimeError) as e:
            raise DataError(f"{path}: damaged checkpoint (its config or weights do not make a network: "
                            f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:80]})") from None
        return cls(net, cfg, as_arrays(checkpoint["normalization"]), checkpoint)

    def source_arrays(self, sessions: list, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """{source: (n, 62, D) float32} of the sessions pooled (and `rows` of them), normalised with the
        training statistics: the arrays this network's streams read. DataError naming a session that
        lacks one (no raw EEG for a spatial-temporal stream)."""
        out = {}
        for name, source in self.net.sources.items():
            if source in out:
                continue
            missing = next((s for s in sessions if s.source(source) is None), None)
            if missing is not None:
                raise DataError(f"{missing.path}: no {source}.npy (no raw EEG was preprocessed), which stream "
                                f"{name} of this network needs")
            x = np.concatenate([np.asarray(s.source(source), dtype=np.float32) for s in sessions])
            out[source] = x if rows is None else x[rows]
        return inputs.apply_normalisation(out, self.stats or {})

    def batches(self, arrays: dict[str, np.ndarray], batch_size: int, device="cpu"):
        """Yield {stream name: (B, W, W, D) maps} over the rows of `arrays` (source_arrays), on `device`."""
        to_maps = inputs.MapBuilder(self.cfg.data.input_width, device)
        n = len(next(iter(arrays.values())))
        for start in range(0, n, batch_size):
            maps = {source: to_maps(torch.from_numpy(x[start:start + batch_size]).to(device))
                    for source, x in arrays.items()}
            yield {name: maps[source] for name, source in self.net.sources.items()}

    @torch.no_grad()
    def probabilities(self, session, batch_size: int = 256, device: str | torch.device = "cpu") -> np.ndarray:
        """(N, nb_class) class probabilities for a preprocessed session's windows (preprocessed.Session)."""
        self.net.eval().to(device)
        arrays = self.source_arrays([session])
        return np.concatenate([torch.softmax(self.net(**maps).float(), dim=1).cpu().numpy()
                               for maps in self.batches(arrays, batch_size, device)])

    def attention_weights(self, sessions: list, per_class: int = 400, batch_size: int = 128
                          ) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
        """(labels (n,), {block: {"spatial": (n, H, W), "spectral_temporal": (n, D)}}) over at most
        `per_class` windows of each class of the sessions (a seeded choice), with only the parts the
        network has (model.SSTEmotionNet.attention_weights)."""
        label = np.concatenate([np.asarray(s.label) for s in sessions]).astype(np.int64)
        keep = _subsample(label, per_class)
        parts: dict[str, dict[str, list]] = {}
        for maps in self.batches(self.source_arrays(sessions, keep), batch_size):
            for block, weights in self.net.attention_weights(**maps).items():
                for kind, w in weights.items():
                    parts.setdefault(block, {}).setdefault(kind, []).append(w.float().cpu().numpy())
        return label[keep], {b: {k: np.concatenate(v) for k, v in d.items()} for b, d in parts.items()}


# ----------------------------------------------------------------------------- converting earlier checkpoints


def convert(path: Path) -> str:
    """Rewrite a checkpoint of an earlier version in place, its NumPy arrays as tensors, so that the safe
    loader takes it; returns what was done. Reads it with the safe loader plus NumPy's array
    reconstruction only, so converting runs no code of the file's either; UserError otherwise."""
    try:
        read_safely(path)
        return f"{path}: loads safely already, left as it is"
    except NotLoaded as e:
        if e.kind != "earlier":
            raise DataError(refusal(path, e, "the run")) from None
    checkpoint = read_earlier(path)
    problem = schemas.check(checkpoint, schemas.CHECKPOINT)
    if problem:
        raise DataError(f"{path}: damaged checkpoint ({problem}); not converted")
    with fileio.atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return f"{path}: converted (its NumPy arrays stored as tensors)"


def read_earlier(path: Path) -> dict:
    """A checkpoint of an earlier version (its statistics as NumPy arrays), read with the safe loader plus
    NumPy's reconstruction of numeric arrays only (no object arrays: nothing in the file can run), its
    arrays returned as tensors; DataError if it holds anything else."""
    reconstruct = (getattr(np, "_core", None) or np.core).multiarray._reconstruct    # NumPy 2 renamed core _core
    allowed = [np.ndarray, np.dtype, *((reconstruct, name) for name in NUMPY_ARRAY_GLOBALS[:2]),
               *{type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64")}]  # numbers only
    try:
        with torch.serialization.safe_globals(allowed), open(path, "rb") as fh:
            return _without_arrays(torch.load(fh, map_location="cpu", weights_only=True))
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except Exception as e:
        raise DataError(f"{path}: not a readable checkpoint of an earlier version ({_first_line(e)})") from None


def _without_arrays(value):
    """`value` with every NumPy array (at any depth of dicts and lists) a tensor; DataError for object arrays."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise DataError(f"an array of {value.dtype} where numbers were expected; not converted")
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, dict):
        return {k: _without_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_arrays(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert checkpoints written by earlier versions (NumPy arrays) "
                                                 "so that they load without running code.")
    parser.add_argument("--convert", nargs="+", type=Path, metavar="FILE.pt", required=True,
                        help="checkpoints/<run>.pt files to rewrite in place (each atomically)")
    args = cli.refuse_empty_values(parser).parse_args(argv)
    for path in args.convert:
        print(convert(path))
    return 0


if __name__ == "__main__":
    cli.cli_main(main)


# ----------------------------------------------------------------------------- the classical baselines' models (baselines.py fits them)


class LinearDE(torch.nn.Module):
    """A fitted baseline as a module: logits (B, n_class) = flattened z-scored DE (B, n_features) @ W.T + b.

    float64, as scikit-learn computes: --predict gives the predictions the run was scored with."""

    sources = {"de": "de"}     # the source array it reads (TrainedModel.source_arrays)

    def __init__(self, n_features: int, n_class: int):
        super().__init__()
        self.linear = torch.nn.Linear(n_features, n_class, dtype=torch.float64)

    def forward(self, de: torch.Tensor) -> torch.Tensor:
        return self.linear(de.flatten(1).to(torch.float64))

    @classmethod
    def from_classifier(cls, clf) -> "LinearDE":
        coef, intercept = np.atleast_2d(clf.coef_), np.atleast_1d(clf.intercept_)
        net = cls(coef.shape[1], coef.shape[0])
        net.linear.weight.data = torch.from_numpy(coef.astype(np.float64))
        net.linear.bias.data = torch.from_numpy(intercept.astype(np.float64))
        return net.requires_grad_(False).eval()


class TrainedBaseline(TrainedModel):
    """A baseline's checkpoint (TrainedModel.load returns one for a baseline's config): the same
    probabilities() as the network's, on flattened DE instead of maps; no attention."""

    @classmethod
    def from_checkpoint(cls, path, cfg: Config, checkpoint: dict) -> "TrainedBaseline":
        state = checkpoint["model"]
        weight = state.get("linear.weight")
        if not torch.is_tensor(weight) or weight.ndim != 2:
            raise DataError(f"{path}: damaged checkpoint (a {cfg.model.name} run without its linear map); delete it "
                            f"and its runs/*.json to redo the run")
        net = LinearDE(weight.shape[1], weight.shape[0])
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise DataError(f"{path}: damaged checkpoint ({(str(e).splitlines() or [''])[0][:80]})") from None
        return cls(net, cfg, checkpoint["normalization"], checkpoint)

    def batches(self, arrays: dict[str, np.ndarray], batch_size: int, device="cpu"):
        """Yield {"de": (B, 62, bands)} over the rows of `arrays`: the linear map flattens them itself."""
        x = arrays["de"]
        for start in range(0, len(x), batch_size):
            yield {"de": torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size])).to(device)}

    def attention_weights(self, sessions: list, per_class: int = 400, batch_size: int = 128):
        raise UserError(f"{self.checkpoint.get('run', 'this run')}: a {self.cfg.model.name} run is a linear model "
                        f"of DE features: it has no attention to draw")


@torch.no_grad()
def predict_probabilities(net: torch.nn.Module, cfg: Config, stats: dict, session, batch_size: int = 256,
                          device: str | torch.device = "cpu") -> np.ndarray:
    """(N, nb_class) class probabilities of a trained network for a preprocessed session's windows
    (preprocessed.Session), its inputs normalised with the training statistics `stats` (a checkpoint's
    "normalization") and mapped as in training (checkpoints.TrainedModel.probabilities)."""
    return TrainedModel(net, cfg, stats).probabilities(session, batch_size, device)


def load_trained(path: Path):
    """(network in eval mode, its Config, its input statistics) from a run's best checkpoint
    (checkpoints.TrainedModel.load)."""
    trained = TrainedModel.load(path)
    return trained.net, trained.cfg, trained.stats
