"""A finished run's checkpoint: read and checked, its network rebuilt, its inputs prepared as in training.

    trained = TrainedModel.load("results/SEED/checkpoints/sub01_ses1.pt")   # eval mode, on the CPU
    trained.probabilities(session)                        # (N, nb_class) for a preprocessed.Session
    label, weights = trained.attention_weights(sessions)  # A3DB weights per block, for figures
    trained.net, trained.cfg, trained.stats, trained.checkpoint["run"]

The one path from a checkpoint to outputs: run.py --predict and --explain, figures.py and the Python
API (results.load_trained, training.predict_probabilities) all go through TrainedModel (a classical
baseline's checkpoint loads as baselines.TrainedBaseline, with the same probabilities()). Inputs are
each stream's source array ("de" or "eeg", model.register_stream), z-scored with the run's training
statistics and mapped by inputs.MapBuilder, exactly as the Trainer feeds them.

A checkpoint's config may name [model] plugins; loading never imports them (a checkpoint is a file a
user may have received): the variants it needs must be registered already, e.g. by the plugins of
the INI file given to run.py, or by model.load_plugins.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import inputs
import model as model_lib
import schemas
from config import Config
from utils import DataError, UserError


def load_checkpoint(path: str | Path) -> dict:
    """A run's best checkpoint (model, config, run, subject, session, epoch, normalization), checked;
    UserError naming the file if it is missing, unreadable or damaged."""
    path = Path(path)
    if not path.is_file():
        record = path.parent.parent / "runs" / f"{path.stem}.json"
        if record.is_file():
            raise UserError(f"{path}: checkpoint not found, although the run finished ({record}); it was "
                            f"deleted: delete {record.name} too and rerun run.py to redo the run")
        raise UserError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)  # our own file: config and arrays
    except Exception as e:      # truncated or not a checkpoint: fails anywhere inside torch's unpickler
        raise DataError(f"{path}: not a readable checkpoint ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:80]}); delete it and its runs/*.json to redo the run") from None
    problem = schemas.check(checkpoint, schemas.CHECKPOINT)
    if problem:
        raise DataError(f"{path}: damaged checkpoint ({problem}); delete it and its runs/*.json to redo the run")
    return checkpoint


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
            import baselines

            return baselines.TrainedBaseline.from_checkpoint(path, cfg, checkpoint)
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
        return cls(net, cfg, checkpoint["normalization"], checkpoint)

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
