"""A finished run's model: its checkpoint read and checked, the model rebuilt by its kind, its inputs prepared as
in training.

    trained = TrainedModel.load("results/SEED/checkpoints/sub01_ses1.pt")   # eval mode, on the CPU
    trained.probabilities(session)                        # (N, nb_class) for a preprocessed session
    label, weights = trained.attention_weights(sessions)  # A3DB weights per block, for figures
    trained.net, trained.cfg, trained.stats, trained.checkpoint["run"], trained.code_changes
    net, cfg, stats = load_trained(path)                  # the same, as utils.load_trained gives it

The one path from a checkpoint to outputs: run.py --predict and --explain, sst.reporting.figures and the
Python API (utils.load_trained, utils.predict_probabilities) all go through TrainedModel, whatever the model
kind (sst.models.kinds builds the model and batches its inputs). Inputs are each stream's source array
("de" or "eeg", model.register_stream), z-scored with the run's training statistics and mapped by
inputs.MapBuilder, exactly as the Trainer feeds them. The code that trained it is compared with today's
(sst.results.provenance): what differs is said in one line.

The checkpoint is read by sst.results.checkpoints, which runs no code of the file's; its config may name
[model] plugins that loading never imports: the variants it needs must be registered already, e.g. by the
plugins of the INI file given to run.py, or by utils.import_plugins.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from sst import config
from sst.config import Config
from sst.data import inputs
from sst.data.electrodes import CHANNELS
from sst.errors import DataError, UserError
from sst.models import kinds
from sst.results import provenance
from sst.results.checkpoints import as_arrays, load_checkpoint


def statistics_problem(cfg: Config, sources: set[str], stats: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a checkpoint's input statistics for the source arrays its network reads, or None.

    Training saves, per source, `<source>_mean` and `<source>_std` over inputs.NORMALISATION_AXES with the axes
    kept ([training] normalization = electrode; none saves nothing): (1, 62, bands) for "de", (1, 62, 1) for
    "eeg". Statistics of another shape would broadcast wrongly or fail in NumPy; a std that is not positive
    would divide by zero (training's are at least the 1 it puts in for a constant electrode's 0)."""
    for source in sorted(sources):
        keys = (f"{source}_mean", f"{source}_std")
        held = [k for k in keys if k in stats]
        if cfg.training.normalization == "electrode" and len(held) < 2 or len(held) == 1:
            missing = " and ".join(k for k in keys if k not in stats)
            return f"{missing} missing, which [training] normalization = {cfg.training.normalization} needs"
        full = (1, len(CHANNELS), getattr(cfg.data, config.SOURCE_LENGTHS[source]))    # the source array: (N, 62, D)
        expected = tuple(1 if axis in inputs.NORMALISATION_AXES[source] else n for axis, n in enumerate(full))
        for key in held:
            if stats[key].shape != expected:
                return f"{key} has shape {stats[key].shape}, expected {expected} for this configuration"
        if held and not (stats[keys[1]] > 0).all():
            return f"{keys[1]} holds {int((~(stats[keys[1]] > 0)).sum())} values that are not positive"
    return None


def _subsample(label: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `per_class` samples of each class (seeded: the same every call)."""
    rng = np.random.default_rng(seed)
    keep = [rng.choice(idx, per_class, replace=False) if len(idx) > per_class else idx
            for idx in (np.flatnonzero(label == c) for c in np.unique(label))]
    return np.sort(np.concatenate(keep))


class TrainedModel:
    """A trained model in eval mode with its Config, its training statistics (`stats`), its checkpoint's fields
    and its model kind (sst.models.kinds), which says how its inputs are batched and whether it has attention.
    `code_changes`: what differs between the code that trained it and today's (None: nothing)."""

    def __init__(self, net: torch.nn.Module, cfg: Config, stats: dict, checkpoint: dict | None = None):
        self.net, self.cfg, self.stats = net.eval(), cfg, stats
        self.checkpoint = checkpoint or {}
        self.kind = kinds.of(cfg)
        self.path: Path | None = None
        self.code_changes: str | None = None
        self.code_digest = ""       # a short digest of today's code identity (where --explain writes, if it changed)

    @classmethod
    def load(cls, path: str | Path) -> "TrainedModel":
        """The model of a run's best checkpoint (load_checkpoint), rebuilt by its kind from its config without
        importing any plugin it names; DataError naming the file if it does not build or load. The code that
        made it is compared with today's: one warning line names what differs (its outputs then come from
        today's code with the old weights)."""
        path = Path(path)
        checkpoint = load_checkpoint(path)
        try:
            cfg = Config.from_dict(checkpoint["config"])
            kind = kinds.of(cfg)
        except (KeyError, TypeError, ValueError, UserError) as e:
            raise DataError(f"{path}: damaged checkpoint (its config or weights do not make a network: "
                            f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:80]})") from None
        net = kind.load(cfg, checkpoint, path)
        stats = as_arrays(checkpoint["normalization"])
        problem = statistics_problem(cfg, set(net.sources.values()), stats)
        if problem:
            raise DataError(f"{path}: damaged checkpoint (normalization: {problem}); delete it and its runs/*.json to "
                            f"redo the run")
        trained = cls(net, cfg, stats, checkpoint)
        now = kind.code(cfg, net)
        trained.path, trained.code_changes = path, provenance.changes(checkpoint.get("code"), now)
        trained.code_digest = hashlib.sha256(json.dumps(now, sort_keys=True).encode()).hexdigest()[:8]
        if trained.code_changes is not None:
            print(f"warning: {path}: trained by other code than today's ({trained.code_changes}); what follows is "
                  f"today's code run with its weights", file=sys.stderr)
        return trained

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
        """Yield the model's keyword inputs over the rows of `arrays` (source_arrays), on `device`: the
        network's maps, a baseline's DE (its model kind's batches)."""
        yield from self.kind.batches(self.net, self.cfg, arrays, batch_size, device)

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
        network has (model.SSTEmotionNet.attention_weights); UserError for a kind without attention."""
        if not self.kind.has_attention:
            raise UserError(f"{self.checkpoint.get('run', 'this run')}: a {self.cfg.model.name} run has no attention "
                            f"to draw")
        label = np.concatenate([np.asarray(s.label) for s in sessions]).astype(np.int64)
        keep = _subsample(label, per_class)
        parts: dict[str, dict[str, list]] = {}
        for maps in self.batches(self.source_arrays(sessions, keep), batch_size):
            for block, weights in self.net.attention_weights(**maps).items():
                for kind, w in weights.items():
                    parts.setdefault(block, {}).setdefault(kind, []).append(w.float().cpu().numpy())
        return label[keep], {b: {k: np.concatenate(v) for k, v in d.items()} for b, d in parts.items()}


@torch.no_grad()
def predict_probabilities(net: torch.nn.Module, cfg: Config, stats: dict, session, batch_size: int = 256,
                          device: str | torch.device = "cpu") -> np.ndarray:
    """(N, nb_class) class probabilities of a trained network for a preprocessed session's windows
    (preprocessed.Session), its inputs normalised with the training statistics `stats` (a checkpoint's
    "normalization") and mapped as in training (TrainedModel.probabilities)."""
    return TrainedModel(net, cfg, stats).probabilities(session, batch_size, device)


def load_trained(path: Path):
    """(network in eval mode, its Config, its input statistics) from a run's best checkpoint
    (TrainedModel.load)."""
    trained = TrainedModel.load(path)
    return trained.net, trained.cfg, trained.stats
